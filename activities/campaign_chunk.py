"""The chunk activity: load features, personalise, guard, check consent and deliver.

One activity per chunk of contacts keeps the workflow history small (a chunk is a few events
whatever its size) while every send stays individually idempotent through its send row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col
from temporalio import activity

from activities.errors import (
    awaiting_reconciliation,
    deferred,
    delivery_unavailable,
    llm_quota,
    not_found,
    profiles_unavailable,
    template_error,
)
from activities.planner import plan_steps
from rag.retriever import Retrieval
from tailor.config import Settings
from tailor.db import Database
from tailor.delivery.dispatch import Dispatcher, DispatchReport, Envelope
from tailor.delivery.providers.base import OutgoingEmail
from tailor.delivery.providers.http import LookupFailed
from tailor.delivery.smtp import DeliveryUnavailable
from tailor.errors import NotFound
from tailor.models import ConsentStatus, Contact, Send, SendStatus, utcnow
from tailor.payloads import ChunkInput, ChunkResult, ReviewBacklog, ReviewRelease
from tailor.personalise.exemplars import ClusterExemplars
from tailor.personalise.generation import (
    Cluster,
    ClusterContent,
    ClusterGenerator,
    clusters_of,
    fill,
)
from tailor.personalise.html import body_html, body_text
from tailor.personalise.llm import LlmQuotaExhausted
from tailor.personalise.rules import (
    ExemplarHint,
    Personalised,
    RuleBasedExecutor,
    TemplateRenderError,
)
from tailor.profiles.loader import Profile, ProfileLoader
from tailor.send_time import DEFAULT_HOUR, fixed_local_hour
from tailor.sending.context import CampaignContext, CampaignContexts
from tailor.sending.guardrail import Guardrail, GuardrailViolation
from tailor.sending.mail import HeaderInjection, mail_parts
from tailor.store.campaigns import send_counts, totals
from tailor.store.consent import current_consent, suppress_addresses
from tailor.store.reviews import backlog, hold, release_decided, released_sends
from tailor.store.sends import (
    ensure_send_rows,
    mark,
    mark_sent,
    segment_contact_ids,
    sends_for,
)

log = logging.getLogger(__name__)

SENT_FLUSH_EVERY = 100


@dataclass(frozen=True)
class _Work:
    send_id: int
    contact: Contact
    message_id: str
    profile: Profile


class _Tally:
    """Outcomes of one attempt, flushed to the send rows in batches."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        # send id, provider message id, generator, why this email
        self.accepted: list[tuple[int, str, str, dict[str, Any]]] = []
        self.refused: list[tuple[int, str]] = []
        self.deferred: list[int] = []
        self.not_claimed: list[int] = []
        self.invalid: list[tuple[int, str]] = []
        self.suppress: list[int] = []  # contacts whose address a provider refused for good


class ChunkActivities:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        contexts: CampaignContexts,
        dispatcher: Dispatcher,
        generator: ClusterGenerator,
        profiles: ProfileLoader,
        exemplars: ClusterExemplars,
    ) -> None:
        self._db = db
        self._profiles = profiles
        self._exemplars = exemplars
        self._settings = settings
        self._contexts = contexts
        self._dispatcher = dispatcher
        self._executor = RuleBasedExecutor()
        self._generator = generator
        self._steps = plan_steps(settings)
        self._guardrail = Guardrail(
            public_url=settings.public_url, secret=settings.unsubscribe_secret
        )

    @activity.defn
    async def send_chunk(self, chunk: ChunkInput) -> ChunkResult:
        ctx = await self._context(chunk.campaign_id)
        due = await self._contexts.due(ctx.tenant.id, chunk.due_at, ctx.send_time)
        async with self._db.read() as conn:
            contact_ids = await segment_contact_ids(
                conn,
                tenant_id=ctx.tenant.id,
                segment=ctx.segment,
                after_contact_id=chunk.bounds.after_contact_id,
                up_to_contact_id=chunk.bounds.last_contact_id,
                limit=chunk.bounds.last_contact_id - chunk.bounds.after_contact_id,
                due=due,
            )
        if chunk.due_at is not None or ctx.send_time != "now":
            ctx = replace(ctx, send_round=chunk.due_at or "sweep")
        already_done = await self.deliver(ctx, contact_ids, chunk.revoked_contact_ids)
        # In send-time rounds the bounds also hold people of other rounds: count only these.
        only = contact_ids if ctx.send_round is not None else None
        return await self._result(chunk, already_done, only)

    async def deliver(
        self,
        ctx: CampaignContext,
        contact_ids: list[int],
        revoked_contact_ids: list[int],
        *,
        occurrence: str = "",
        review: bool = True,
    ) -> int:
        """Send ``ctx``'s email to these contacts (one occurrence of it); returns how many of
        their sends were already settled. ``review=False`` (journeys, which cannot wait for a
        person) sends the rules-tier email where LLM content awaits review."""
        async with self._db.write() as conn:
            await ensure_send_rows(
                conn,
                campaign_id=ctx.campaign_id,
                contact_ids=contact_ids,
                domain=ctx.sender_domain,
                occurrence=occurrence,
            )
        try:
            async with _heartbeating():  # a provider's activity API can be slow (rate limits)
                unclear, unclear_wait_s = await self._dispatcher.reconcile(
                    ctx.campaign_id, contact_ids, occurrence
                )
        except LookupFailed as exc:
            raise delivery_unavailable(str(exc)) from exc
        work, already_done, waiting = await self._prepare(
            ctx, contact_ids, revoked_contact_ids, occurrence
        )
        now = utcnow()
        clusters = clusters_of((item.contact for item in work), ctx.catalog, now)
        async with _heartbeating():  # retrieval and LLM calls can outlast the heartbeat timeout
            retrievals = await self._retrievals(ctx, clusters)
            try:
                contents = await self._generator.for_contacts(
                    ctx, clusters, now, retrievals.by_cluster
                )
            except LlmQuotaExhausted as exc:
                raise llm_quota(exc.retry_after_s) from exc
        if review:
            work = await self._hold(work, contents)
        await self._send(ctx, work, contents, waiting, retrievals)
        if unclear:
            raise awaiting_reconciliation(unclear, unclear_wait_s)
        return already_done

    @activity.defn
    async def release_reviewed(self, release: ReviewRelease) -> ReviewBacklog:
        """Deliver the held sends whose review is decided: the approved content, or the
        rules-tier email if it was rejected or expired. Idempotent like a chunk: a retry
        finds what an earlier attempt delivered already settled."""
        ctx = await self._context(release.campaign_id)
        async with self._db.write() as conn:
            await release_decided(conn, ctx.campaign_id)
        while True:
            async with self._db.read() as conn:
                released = await released_sends(conn, ctx.campaign_id, self._settings.chunk_size)
            if not released:
                break
            work, _, waiting = await self._prepare(ctx, list(released), release.revoked_contact_ids)
            by_review = await self._generator.from_reviews(set(released.values()))
            contents = {
                contact_id: by_review[review_id]
                for contact_id, review_id in released.items()
                if review_id in by_review
            }
            clusters = clusters_of((item.contact for item in work), ctx.catalog, utcnow())
            async with _heartbeating():
                retrievals = await self._retrievals(ctx, clusters)
            await self._send(ctx, work, contents, waiting, retrievals)
        async with self._db.read() as conn:
            open_reviews, held = await backlog(conn, ctx.campaign_id)
            counts = await send_counts(conn, ctx.campaign_id)
        sent, suppressed, failed = totals(counts)
        return ReviewBacklog(open_reviews, held, sent, suppressed, failed)

    async def _retrievals(self, ctx: CampaignContext, clusters: dict[int, Cluster]) -> _Retrievals:
        by_cluster = await self._exemplars.for_clusters(ctx, set(clusters.values()))
        return _Retrievals(clusters, by_cluster)

    async def _context(self, campaign_id: str) -> CampaignContext:
        try:
            return await self._contexts.get(campaign_id)
        except NotFound as exc:
            raise not_found(exc) from exc

    async def _hold(self, work: list[_Work], contents: dict[int, ClusterContent]) -> list[_Work]:
        """Hold the sends whose content awaits review; the rest go ahead."""
        held: dict[int, list[int]] = {}
        ready: list[_Work] = []
        for item in work:
            content = contents.get(item.contact.id or 0)
            if content is not None and content.review is not None and content.held:
                held.setdefault(content.review.id, []).append(item.send_id)
            else:
                ready.append(item)
        if held:
            async with self._db.write() as conn:
                for review_id, send_ids in held.items():
                    await hold(conn, send_ids, review_id)
        return ready

    async def _send(
        self,
        ctx: CampaignContext,
        work: list[_Work],
        contents: dict[int, ClusterContent],
        waiting: int,
        retrievals: _Retrievals,
    ) -> None:
        tally = _Tally(ctx.tenant.id)
        failure: BaseException | None = None
        try:
            await self._deliver(ctx, work, contents, tally, retrievals)
        except BaseException as exc:  # record what was settled before re-raising
            failure = exc
        finally:
            await self._flush(tally, final=True)
        if isinstance(failure, DeliveryUnavailable):
            raise delivery_unavailable(str(failure)) from failure
        if isinstance(failure, TemplateRenderError):
            raise template_error(str(failure)) from failure
        if failure is not None:
            raise failure
        if tally.deferred:
            raise deferred(len(tally.deferred))
        if waiting:
            raise profiles_unavailable(waiting)

    async def _prepare(
        self,
        ctx: CampaignContext,
        contact_ids: list[int],
        revoked_contact_ids: list[int],
        occurrence: str = "",
    ) -> tuple[list[_Work], int, int]:
        """Settle these contacts' pending sends that lack consent; return the rest to deliver,
        how many sends were already done, and how many wait for their profile."""
        async with self._db.read() as conn:
            sends = await sends_for(
                conn, campaign_id=ctx.campaign_id, contact_ids=contact_ids, occurrence=occurrence
            )
            pending = [s for s in sends if s[2] == SendStatus.PENDING]
            consent = await current_consent(conn, (s[1] for s in pending))
        revoked = set(revoked_contact_ids)
        no_consent = [
            send_id
            for send_id, contact_id, _, _ in pending
            if consent.get(contact_id) != ConsentStatus.GRANTED or contact_id in revoked
        ]
        if no_consent:
            async with self._db.write() as conn:
                await mark(
                    conn,
                    send_ids=no_consent,
                    status=SendStatus.SUPPRESSED,
                    from_status=SendStatus.PENDING,
                    error="no consent at send time",
                )
        skip = set(no_consent)
        to_send = [s for s in pending if s[0] not in skip]
        profiles = await self._profiles.load([contact_id for _, contact_id, _, _ in to_send])
        work = [
            _Work(send_id, profiles[contact_id].contact, message_id, profiles[contact_id])
            for send_id, contact_id, _, message_id in to_send
            if contact_id in profiles
        ]
        return work, len(sends) - len(pending), len(to_send) - len(work)

    async def _deliver(
        self,
        ctx: CampaignContext,
        work: Sequence[_Work],
        contents: dict[int, ClusterContent],
        tally: _Tally,
        retrievals: _Retrievals,
    ) -> None:
        now = utcnow()
        envelopes: list[Envelope] = []
        sources: dict[int, tuple[_Work, Personalised]] = {}
        for item in work:
            composed = self._compose(ctx, item, contents.get(item.contact.id or 0), now,
                                     retrievals.of(item.contact.id or 0))  # fmt: skip
            if isinstance(composed, str):
                tally.invalid.append((item.send_id, composed))
                continue
            content, envelope = composed
            envelopes.append(envelope)
            sources[item.send_id] = (item, content)

        async def checkpoint(report: DispatchReport) -> None:
            accepted, report.accepted = report.accepted, []
            for env, pmid, provider in accepted:
                item, content = sources[env.send_id]
                contact_id = item.contact.id or 0
                written = contents.get(contact_id)
                retrieval = retrievals.of(contact_id)
                generator = written.provider if written is not None and written.usable else "rules"
                why = _explain(ctx, self._steps, content, written, retrieval)
                why["profile"] = item.profile.explain(now)
                if ctx.send_round is not None:
                    why["send_time"] = _send_time(ctx.send_round, item.contact, ctx.send_time)
                if ctx.explain_extra:
                    why.update(ctx.explain_extra)
                why["delivery"] = {"provider": provider}  # after any failover
                tally.accepted.append((env.send_id, pmid, generator, why))
            if len(tally.accepted) >= SENT_FLUSH_EVERY:
                await self._flush(tally)

        report = await self._dispatcher.dispatch(
            tenant_id=ctx.tenant.id,
            providers=ctx.tenant.providers,
            rate_per_s=ctx.tenant.send_rate_per_s,
            envelopes=envelopes,
            checkpoint=checkpoint,
        )
        await checkpoint(report)
        for env, why, suppress in report.refused:
            tally.refused.append((env.send_id, why))
            if suppress:
                tally.suppress.append(env.contact_id)
        tally.not_claimed.extend(env.send_id for env in report.not_claimed)
        tally.deferred.extend(env.send_id for env in report.left)
        if report.left and report.unavailable:
            raise DeliveryUnavailable(
                f"{len(report.left)} sends found no provider: " + "; ".join(report.unavailable)
            )

    def _compose(
        self,
        ctx: CampaignContext,
        item: _Work,
        written: ClusterContent | None,
        now: datetime,
        retrieval: Retrieval | None,
    ) -> tuple[Personalised, Envelope] | str:
        """The recipient's email, or why it cannot be sent (a guardrail)."""
        try:
            content = self._personalise(ctx, item.contact, now, _hint(retrieval))
            if written is not None and written.usable:
                content = _from_llm(content, written, item.contact, ctx)
            self._guardrail.check_content(content)
            compliance = self._guardrail.compliance(
                campaign_id=ctx.campaign_id,
                contact_id=item.contact.id or 0,
                tenant_name=ctx.tenant.name,
                postal_address=ctx.tenant.postal_address,
                unsubscribe_mailbox=f"unsubscribe@{ctx.sender_domain}",
                disclaimer=ctx.brand.required_disclaimer,
            )
            parts = mail_parts(
                content=content,
                compliance=compliance,
                message_id=item.message_id,
                campaign_id=ctx.campaign_id,
            )
        except (GuardrailViolation, HeaderInjection) as exc:
            return f"guardrail: {exc}"
        email = OutgoingEmail(
            send_id=item.send_id,
            tenant_id=ctx.tenant.id,
            campaign_id=ctx.campaign_id,
            to_email=item.contact.email,
            from_email=ctx.tenant.from_email,
            from_name=ctx.tenant.from_name,
            subject=parts.subject,
            text=parts.text,
            html=parts.html,
            headers=parts.headers,
        )
        return content, Envelope(item.send_id, item.contact.id or 0, email, now)

    def _personalise(
        self,
        ctx: CampaignContext,
        contact: Contact,
        now: datetime,
        exemplar: ExemplarHint | None = None,
    ) -> Personalised:
        """The rules tier on the campaign's template, or on the tenant's default template for a
        recipient the campaign's cannot render for (with no default, the campaign stops)."""
        try:
            return self._executor.personalise(
                contact=contact, version=ctx.version, catalog=ctx.catalog,
                tenant_name=ctx.tenant.name, now=now, exemplar=exemplar, goal=ctx.goal,
            )  # fmt: skip
        except TemplateRenderError as exc:
            if ctx.default_version is None:
                raise
            content = self._executor.personalise(
                contact=contact, version=ctx.default_version, catalog=ctx.catalog,
                tenant_name=ctx.tenant.name, now=now, exemplar=exemplar, goal=ctx.goal,
            )  # fmt: skip
            content.rules.append(
                f"template:tenant-default v{ctx.default_version.id} ({str(exc)[:120]})"
            )
            return content

    async def _flush(self, tally: _Tally, *, final: bool = False) -> None:
        accepted, tally.accepted = tally.accepted, []
        async with self._db.write() as conn:
            await mark_sent(conn, accepted)
            if not final:
                return
            for send_id, reason in tally.refused:
                for from_status in (SendStatus.DISPATCHED, SendStatus.PENDING):
                    await mark(
                        conn,
                        send_ids=[send_id],
                        status=SendStatus.FAILED,
                        from_status=from_status,
                        error=reason,
                    )
            await suppress_addresses(conn, tally.tenant_id, tally.suppress, source="hard-bounce")
            for send_id, reason in tally.invalid:
                await mark(
                    conn,
                    send_ids=[send_id],
                    status=SendStatus.FAILED,
                    from_status=SendStatus.PENDING,
                    error=reason,
                )
            # The server said "not now" after the claim: nothing was accepted, so it may go again.
            await mark(
                conn,
                send_ids=tally.deferred,
                status=SendStatus.PENDING,
                from_status=SendStatus.DISPATCHED,
            )
            # The claim refused: consent was revoked in the meantime (a send another attempt
            # claimed is no longer pending, so this leaves it alone).
            await mark(
                conn,
                send_ids=tally.not_claimed,
                status=SendStatus.SUPPRESSED,
                from_status=SendStatus.PENDING,
                error="consent revoked before delivery",
            )

    async def _result(
        self, chunk: ChunkInput, already_done: int, only: list[int] | None = None
    ) -> ChunkResult:
        where = [
            col(Send.campaign_id) == chunk.campaign_id,
            col(Send.contact_id) > chunk.bounds.after_contact_id,
            col(Send.contact_id) <= chunk.bounds.last_contact_id,
        ]
        if only is not None:
            where.append(col(Send.contact_id).in_(only))
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(Send.status, func.count())  # type: ignore[call-overload]
                .where(*where)
                .group_by(col(Send.status))
            )
            counts = dict(rows.all())
        sent, suppressed, failed = totals(counts)
        return ChunkResult(
            sent, suppressed, failed, already_done=already_done, held=counts.get(SendStatus.HELD, 0)
        )


def _from_llm(
    rules: Personalised, written: ClusterContent, contact: Contact, ctx: CampaignContext
) -> Personalised:
    """The LLM's words for the cluster, filled for this recipient; the rules keep the link."""
    email = written.email
    body = fill(email.body, contact, ctx.catalog)
    return Personalised(
        subject=_plain(fill(email.subject, contact, ctx.catalog)),
        preheader=_plain(fill(email.preheader, contact, ctx.catalog)),
        body=body_text(body),
        cta_text=_plain(fill(email.cta_text, contact, ctx.catalog)) or rules.cta_text,
        cta_url=rules.cta_url,
        rules=[*rules.rules, f"llm:{written.provider}:{written.model}"],
        body_html=body_html(body),
    )


def _plain(text: str) -> str:
    """One line of text, with any markup the model wrote removed."""
    return " ".join(body_text(text).split())


def _explain(
    ctx: CampaignContext,
    steps: list[str],
    content: Personalised,
    written: ClusterContent | None,
    retrieval: Retrieval | None,
) -> dict[str, Any]:
    """Why this email: every decision behind it, and nothing about the person."""
    why: dict[str, Any] = {
        "plan": steps,
        "template_version_id": ctx.version.id,
        "rules": content.rules,
        "guardrail": {
            "consent": "granted: checked atomically with the claim, right before delivery",
            "can_spam": "postal address, unsubscribe link, List-Unsubscribe one-click",
            "subject": "honest: not a fake reply or forward",
        },
        "retrieved_exemplars": retrieval.explain() if retrieval is not None else [],
    }
    if written is None or not written.usable:
        why["generator"] = {"tier": "rules"}
    else:
        source = "cache" if written.evaluation is None else "generated"
        why["generator"] = {
            "tier": written.provider,
            "model": written.model,
            "prompt_version": ctx.prompt_version,
            "source": "review" if written.review is not None else source,
        }
    if written is not None and written.evaluation is not None:
        why["evaluation"] = written.evaluation.as_dict()
    if written is not None and written.review is not None:
        why["review"] = {
            "id": written.review.id,
            "status": written.review.status.value,
            "edited": written.review.edited,
            "sent": "approved content" if written.usable else "rules-tier email instead",
        }
    return why


@dataclass(frozen=True)
class _Retrievals:
    clusters: dict[int, Cluster]  # contact id -> cluster
    by_cluster: dict[Cluster, Retrieval]

    def of(self, contact_id: int) -> Retrieval | None:
        cluster = self.clusters.get(contact_id)
        return self.by_cluster.get(cluster) if cluster is not None else None


def _send_time(send_round: str, contact: Contact, send_time: str) -> dict[str, object]:
    """Why the email went at this hour (send-time optimisation)."""
    hour = contact.best_send_hour if contact.best_send_hour is not None else DEFAULT_HOUR
    fixed = fixed_local_hour(send_time)
    if fixed is not None:
        hour = fixed
        why = f"the campaign goes at {fixed:02d}:00 in each recipient's own timezone"
        if send_round == "sweep":
            why = (
                f"{fixed:02d}:00 local did not come round in the 24 hourly rounds (a clock change)"
            )
    elif send_round == "sweep":
        why = "their best hour did not come round in the 24 hourly rounds (a clock change)"
    elif contact.best_send_hour is not None:
        why = "their best hour, learned daily from when they open email"
    else:
        why = f"no open history yet: the default {DEFAULT_HOUR}:00"
    return {"local_hour": hour, "timezone": contact.timezone, "round_utc": send_round,
            "why": why}  # fmt: skip


def _hint(retrieval: Retrieval | None) -> ExemplarHint | None:
    if retrieval is None or not retrieval.exemplars:
        return None
    top = retrieval.exemplars[0]
    return ExemplarHint(top.id, top.cta)


HEARTBEAT_EVERY_S = 5.0


@asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat in the background while a step with no natural progress points runs."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
            activity.heartbeat("preparing")

    task = asyncio.ensure_future(beat())
    try:
        yield
    finally:
        task.cancel()
