"""Maps domain and dependency errors to Temporal failures in one place."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from tailor.errors import NotFound


def not_found(exc: NotFound) -> ApplicationError:
    return ApplicationError(str(exc), type="CampaignNotFound", non_retryable=True)


def template_error(message: str) -> ApplicationError:
    return ApplicationError(message, type="TemplateError", non_retryable=True)


def delivery_unavailable(message: str) -> ApplicationError:
    # Retryable: Temporal backs off and the retry skips every send already settled.
    return ApplicationError(message, type="DeliveryUnavailable")


def deferred(count: int) -> ApplicationError:
    return ApplicationError(
        f"{count} sends deferred by the provider (4xx); retrying the chunk",
        type="DeliveryDeferred",
    )


def profiles_unavailable(count: int) -> ApplicationError:
    # Retryable: the chunk comes back with backoff and sends to these once profiles load.
    return ApplicationError(
        f"{count} recipients have no profile now (store down, no cached copy under 24 h); "
        "retrying the chunk for them",
        type="ProfilesUnavailable",
    )


def llm_quota(retry_after_s: float) -> ApplicationError:
    # Deferred, not failed: Temporal's retry timer (durable, server-side) brings the chunk back
    # once the provider's quota window has passed.
    return ApplicationError(
        f"LLM quota exhausted; chunk deferred {retry_after_s:.0f}s",
        type="LlmQuotaExhausted",
        next_retry_delay=timedelta(seconds=retry_after_s),
    )


def journey_not_found(message: str) -> ApplicationError:
    return ApplicationError(message, type="JourneyNotFound", non_retryable=True)


def awaiting_reconciliation(count: int, wait_s: float) -> ApplicationError:
    # Retryable after the wait: by then the provider's records show whether these went out.
    return ApplicationError(
        f"{count} sends of an earlier attempt are unclear; looking them up at the provider "
        f"in {wait_s:.0f}s",
        type="AwaitingReconciliation",
        next_retry_delay=timedelta(seconds=max(1.0, wait_s)),
    )
