"""ESP event webhooks: SendGrid, Mailgun and Amazon SES (through SNS).

Public in api/access.py: each request carries its provider's signature, checked over the raw
body before anything is parsed (``tailor.delivery.webhooks``). A request that cannot be proved
genuine (unsigned, forged, tampered, replayed, stale) is answered 401 and records nothing; a
signed body that is malformed 422; an SNS signing certificate that cannot be fetched 503 (SNS
retries). A route whose key is not configured answers 404. Otherwise the events are stored and
applied in one transaction (``tailor.delivery.webhooks.ingest``) and the answer counts them;
the people's opens and clicks among them are engaged in the background, like the pixel's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api.deps import DatabaseDep, GatewayDep, SettingsDep, TemporalGateway
from api.openapi import problems
from api.schemas.webhooks import WebhookCounts
from tailor.config import Settings
from tailor.db import Database
from tailor.delivery.webhooks import mailgun, sendgrid, ses, sns
from tailor.delivery.webhooks.events import EspEvent
from tailor.delivery.webhooks.fetch import FetchFailed, SnsHttp
from tailor.delivery.webhooks.ingest import Ingested, ingest
from tailor.delivery.webhooks.refusal import WebhookRefused
from tailor.delivery.webhooks.replay import MemoryReplayGuard, RedisReplayGuard, ReplayGuard
from tailor.engagement.tracker import Reported, Tracking
from tailor.temporal.guard import pause_breaching

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

#: The routes' paths, for the body-size limit (SendGrid batches run to a few hundred KB).
PATHS = ("/v1/webhooks/sendgrid", "/v1/webhooks/mailgun", "/v1/webhooks/ses")


@dataclass
class WebhookState:
    """Per app: the replay guard, SNS's HTTP calls and the certificate cache (kept across
    requests: fetching a certificate per message would be slow and hammer SNS)."""

    guard: ReplayGuard
    sns_http: SnsHttp
    certificates: sns.CertificateCache = field(init=False)
    sendgrid_key: ec.EllipticCurvePublicKey | None = None

    def __post_init__(self) -> None:
        # Through a lambda, so a test may swap ``sns_http`` and the cache uses the new one.
        self.certificates = sns.CertificateCache(lambda url: self.sns_http.certificate(url))

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookState:
        guard: ReplayGuard = (
            RedisReplayGuard.from_url(settings.redis_url, prefix=settings.redis_key_prefix)
            if settings.redis_url
            else MemoryReplayGuard()
        )
        key = settings.sendgrid_webhook_public_key
        return cls(guard, SnsHttp(), sendgrid.load_public_key(key) if key else None)

    async def close(self) -> None:
        await self.sns_http.close()
        if isinstance(self.guard, RedisReplayGuard):
            await self.guard.close()


def get_webhooks(request: Request) -> WebhookState:
    state: WebhookState = request.app.state.webhooks
    return state


WebhooksDep = Annotated[WebhookState, Depends(get_webhooks)]
ERRORS = problems(401, 404, 422, 503)


def _refused(error: WebhookRefused) -> JSONResponse:
    # The reason is fixed text (never request content): safe to answer and to log.
    log.info("webhook refused: %s", error.reason)
    message = f"webhook refused: {error.reason}"
    detail = [{"field": "signature", "message": error.reason}]
    return JSONResponse({"message": message, "detail": detail}, status_code=401)


async def _ingest(
    request: Request,
    db: Database,
    gateway: TemporalGateway,
    events: Sequence[EspEvent],
    settings: Settings,
) -> Ingested:
    """Store and apply the events; hand the people's opens and clicks to the tracker, which
    engages them in the background (a send's first of each kind only, whoever reported it first:
    pixel or provider); then pause any campaign a new bounce or complaint pushed over its
    tenant's limits (``tailor.delivery.guard``)."""
    done = await ingest(db, events, soft_bounce_limit=settings.soft_bounce_limit)
    tracker: Tracking = request.app.state.tracker
    tracker.engage_reported(Reported(e.tenant_id, e.send_id, e.metric, e.at)
                            for e in done.engagements)  # fmt: skip
    if done.flagged:
        await pause_breaching(db, gateway.control, done.flagged)
    return done


def _max_age(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.webhook_max_age_s)


@router.post("/sendgrid", response_model=WebhookCounts, responses=ERRORS)
async def sendgrid_events(
    request: Request,
    settings: SettingsDep,
    db: DatabaseDep,
    state: WebhooksDep,
    gateway: GatewayDep,
) -> WebhookCounts | JSONResponse:
    """SendGrid's Signed Event Webhook: a JSON array of events."""
    if state.sendgrid_key is None:
        raise HTTPException(404, "SendGrid webhooks are not configured")
    body = await request.body()
    try:
        sendgrid.verify(request.headers, body, state.sendgrid_key, max_age=_max_age(settings))
    except WebhookRefused as error:
        return _refused(error)
    events = sendgrid.parse(body)  # InvalidInput: 422 naming the event at fault
    ignored = len(json.loads(body)) - len(events)
    done = await _ingest(request, db, gateway, events, settings)
    return WebhookCounts(accepted=done.accepted, duplicates=done.duplicates, ignored=ignored)


@router.post("/mailgun", response_model=WebhookCounts, responses=ERRORS)
async def mailgun_event(
    request: Request,
    settings: SettingsDep,
    db: DatabaseDep,
    state: WebhooksDep,
    gateway: GatewayDep,
) -> WebhookCounts | JSONResponse:
    """Mailgun's webhook: one event, signed with the webhook signing key; tokens are single-use."""
    if not settings.mailgun_webhook_signing_key:
        raise HTTPException(404, "Mailgun webhooks are not configured")
    body = await request.body()
    try:
        event = await mailgun.receive(
            body, settings.mailgun_webhook_signing_key, state.guard, max_age=_max_age(settings)
        )
    except WebhookRefused as error:
        return _refused(error)
    except RedisError as error:
        raise HTTPException(503, "the replay guard (Redis) is unreachable; try again") from error
    if event is None:
        return WebhookCounts(accepted=0, duplicates=0, ignored=1)
    done = await _ingest(request, db, gateway, [event], settings)
    return WebhookCounts(accepted=done.accepted, duplicates=done.duplicates, ignored=0)


@router.post("/ses", response_model=WebhookCounts, responses=ERRORS)
async def ses_events(
    request: Request,
    settings: SettingsDep,
    db: DatabaseDep,
    state: WebhooksDep,
    gateway: GatewayDep,
) -> WebhookCounts | JSONResponse:
    """Amazon SES events published to an SNS topic in ``sns_topic_arns`` (HTTPS subscription;
    none listed: 404, every message refused).
    A SubscriptionConfirmation is confirmed by visiting its (allow-listed) SubscribeURL."""
    if not settings.sns_topic_arns:
        raise HTTPException(404, "SES webhooks are not configured (no SNS topic allowed)")
    body = await request.body()
    try:
        message = await sns.verify(
            body,
            topics=frozenset(settings.sns_topic_arns),
            certificates=state.certificates,
            max_age=_max_age(settings),
        )
    except WebhookRefused as error:
        return _refused(error)
    except FetchFailed as error:
        log.warning("SNS: %s", error)
        raise HTTPException(503, "the SNS signing certificate could not be fetched") from error
    if message.type == "SubscriptionConfirmation" and message.subscribe_url:
        try:
            await state.sns_http.confirm(message.subscribe_url)
        except FetchFailed as error:
            raise HTTPException(503, "the SNS subscription could not be confirmed") from error
        log.info("SNS subscription to %s confirmed", message.topic_arn)
        return WebhookCounts(accepted=0, duplicates=0, ignored=0)
    if not message.is_notification:  # an UnsubscribeConfirmation: nothing to do
        return WebhookCounts(accepted=0, duplicates=0, ignored=1)
    events = ses.parse(message)
    if not events:
        return WebhookCounts(accepted=0, duplicates=0, ignored=1)
    done = await _ingest(request, db, gateway, events, settings)
    return WebhookCounts(accepted=done.accepted, duplicates=done.duplicates, ignored=0)
