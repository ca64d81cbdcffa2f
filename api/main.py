"""The FastAPI app factory. One Database and one (lazily connected) Temporal client per app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from api.access import roles_for
from api.audit import AuditMiddleware
from api.deps import TemporalGateway, authorize
from api.idempotency import Replayed, replay_response
from api.limits import BodySizeLimit
from api.observe import RequestMetrics
from api.openapi import install as document_errors
from api.rate_limit import limit_rate
from api.recorder import RecorderProcess
from api.routes import (
    ab_tests,
    audit,
    campaigns,
    catalog,
    consent,
    contacts,
    delivery,
    events,
    health,
    journeys,
    keys,
    metrics,
    outbound,
    platform,
    reports,
    reviews,
    sends,
    templates,
    tenant_settings,
    tracking,
    unsubscribe,
    usage,
    webhooks,
)
from tailor import __version__
from tailor.accounts.oidc import OidcVerifier
from tailor.accounts.rate_limit import request_limiter
from tailor.config import Settings
from tailor.db import Database
from tailor.engagement.tracker import Tracker
from tailor.errors import InvalidInput, NotFound
from tailor.journeys.triggers import TriggerAgent
from tailor.observability import tracing
from tailor.profiles.cache import FeatureCache
from tailor.store.reviews import AlreadyDecided


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def create_app(
    settings: Settings | None = None,
    temporal_client: Client | None = None,
    *,
    tracking_recorder: Literal["inline", "process"] = "inline",
) -> FastAPI:
    """The API. ``tracking_recorder="process"`` (``tailor api``) records tracked opens and
    clicks in a child process (``api/recorder.py`` says why); inline, they are recorded on the
    app's own event loop, which is what an app made in-process (tests) wants."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.db = Database(settings.resolved_database_url)
        app.state.temporal = TemporalGateway(settings, temporal_client)
        app.state.triggers = TriggerAgent(app.state.db, app.state.temporal.journeys)
        app.state.features = FeatureCache.from_settings(settings)
        app.state.oidc = OidcVerifier.from_settings(settings)
        app.state.rate_limiter = request_limiter(settings)
        tracker = Tracker(
            app.state.db,
            secret=settings.tracking_secret,
            triggers=app.state.triggers,
            features=app.state.features,
        )
        if tracking_recorder == "process":
            app.state.tracker = RecorderProcess(settings, directory=tracker)
            await app.state.tracker.start()
        else:
            app.state.tracker = tracker
            tracker.start()
        app.state.webhooks = webhooks.WebhookState.from_settings(settings)
        yield
        await app.state.webhooks.close()
        await app.state.tracker.stop()
        await app.state.rate_limiter.close()
        if app.state.features is not None:
            await app.state.features.close()
        await app.state.db.dispose()

    app = FastAPI(
        title="Tailor",
        version=__version__,
        description="Durable, AI-personalised email for marketers. Every route but health, the "
        "unsubscribe pages and signed hooks takes `Authorization: Bearer <API key>`; the key "
        "says the tenant and the role.",
        lifespan=lifespan,
        # The rate limit counts callers authorize has let in (api/rate_limit.py says why).
        dependencies=[Depends(authorize), Depends(limit_rate)],
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.api_max_body_bytes,
        batch_max_bytes=settings.api_max_batch_body_bytes,
        # The CSV upload streams and checks its own, larger limit (10,000 rows of long fields).
        route_max_bytes={
            "/v1/products/csv": catalog.MAX_CSV_BYTES,
            # ESP webhooks post batches (SendGrid: arrays of events), as large as the batch routes.
            **dict.fromkeys(webhooks.PATHS, settings.api_max_batch_body_bytes),
        },
    )
    app.add_exception_handler(Replayed, replay_response)

    # Every mutating call leaves one audit entry, whatever its outcome (api/audit.py).
    app.add_middleware(AuditMiddleware)
    # The pixel and the redirect skip everything above (api/routes/tracking.py).
    app.add_middleware(tracking.TrackingFastPath)
    # Outermost: every request counted and timed, the tracking routes' too (api/observe.py).
    app.add_middleware(RequestMetrics)
    if (traced := tracing.active()) is not None:  # one trace per request, when switched on
        traced.instrument_app(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = "; ".join(f"{_field(tuple(e['loc']))}: {e['msg']}" for e in errors[:5])
        detail = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in errors]
        return JSONResponse({"message": message, "detail": detail}, status_code=422)

    @app.exception_handler(InvalidInput)
    async def _invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        detail = [{"field": field, "message": message} for field, message in exc.problems]
        return JSONResponse({"message": str(exc), "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"message": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(AlreadyDecided)
    async def _conflict(_: Request, exc: AlreadyDecided) -> JSONResponse:
        return JSONResponse({"message": str(exc)}, status_code=409)

    @app.exception_handler(DBAPIError)
    async def _unstorable(_: Request, exc: DBAPIError) -> JSONResponse:
        # A safety net behind the schemas' bounds: SQLSTATE class 22 is a value the database
        # cannot hold or compare (a NUL character in text, a number past its column), so it is
        # the request's fault; the request's transaction has rolled back. Anything else is a 500.
        if str(getattr(exc.orig, "sqlstate", "") or "")[:2] != "22":
            raise exc
        message = "a value cannot be stored (text with a NUL character, or a number too large)"
        return JSONResponse(
            {"message": message, "detail": [{"field": "request", "message": message}]},
            status_code=422,
        )

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"message": str(exc)}, status_code=404)

    for module in (
        health,
        metrics,
        contacts,
        events,
        journeys,
        templates,
        campaigns,
        ab_tests,
        delivery,
        tenant_settings,
        sends,
        reviews,
        usage,
        reports,
        unsubscribe,
        tracking,
        keys,
        platform,
        catalog,
        audit,
        consent,
        webhooks,
        outbound,
    ):
        app.include_router(module.router)
    document_errors(app)
    _check_every_route_has_a_rule(app)
    return app


def _check_every_route_has_a_rule(app: FastAPI) -> None:
    """Refuse to start with a route missing from api/access.py (it raises MissingRule)."""
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            roles_for(method, path)
