"""Maps domain and dependency errors to Temporal failures, in one place.

Every failure type name is defined once, in ``ErrorType``: the helpers below raise with it and
``workflows/options.py`` lists the non-retryable ones from it, so the two sides cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from temporalio.exceptions import ApplicationError

from tailor.delivery.providers.http import LookupFailed
from tailor.delivery.smtp import DeliveryUnavailable
from tailor.errors import NotFound
from tailor.journeys.runs import JourneyNotDefined
from tailor.outbound.delivery import ReceiverFailed
from tailor.personalise.llm import LlmQuotaExhausted
from tailor.personalise.rules import TemplateRenderError
from tailor.sending.errors import AwaitingReconciliation, ProfilesUnavailable, SendsDeferred


class ErrorType:
    """The ``type`` of every ``ApplicationError`` an activity raises."""

    # Non-retryable: the thing an activity works for is gone, or cannot be sent as it is.
    CAMPAIGN_NOT_FOUND = "CampaignNotFound"
    TENANT_NOT_FOUND = "TenantNotFound"
    TEMPLATE_NOT_FOUND = "TemplateNotFound"
    CONTACT_NOT_FOUND = "ContactNotFound"
    JOURNEY_NOT_FOUND = "JourneyNotFound"
    AB_TEST_NOT_FOUND = "AbTestNotFound"
    NOT_FOUND = "NotFound"  # any other id that does not exist
    TEMPLATE_ERROR = "TemplateError"
    WEBHOOK_UNDELIVERABLE = "WebhookUndeliverable"  # a private address, an unreadable write key
    # Retryable: Temporal backs off and the retry skips every send already settled.
    DELIVERY_UNAVAILABLE = "DeliveryUnavailable"
    DELIVERY_DEFERRED = "DeliveryDeferred"
    PROFILES_UNAVAILABLE = "ProfilesUnavailable"
    LLM_QUOTA_EXHAUSTED = "LlmQuotaExhausted"
    AWAITING_RECONCILIATION = "AwaitingReconciliation"
    WEBHOOK_REFUSED = "WebhookRefused"  # the endpoint did not take a batch: retried with backoff


# Whatever was not found, retrying will not make it exist.
NOT_FOUND_TYPES = (
    ErrorType.CAMPAIGN_NOT_FOUND,
    ErrorType.TENANT_NOT_FOUND,
    ErrorType.TEMPLATE_NOT_FOUND,
    ErrorType.CONTACT_NOT_FOUND,
    ErrorType.JOURNEY_NOT_FOUND,
    ErrorType.AB_TEST_NOT_FOUND,
    ErrorType.NOT_FOUND,
)
_NOT_FOUND_BY_KIND = {
    "campaign": ErrorType.CAMPAIGN_NOT_FOUND,
    "tenant": ErrorType.TENANT_NOT_FOUND,
    "template": ErrorType.TEMPLATE_NOT_FOUND,
    "template version": ErrorType.TEMPLATE_NOT_FOUND,
    "contact": ErrorType.CONTACT_NOT_FOUND,
    "A/B test": ErrorType.AB_TEST_NOT_FOUND,
    "A/B test variant": ErrorType.AB_TEST_NOT_FOUND,
}


def not_found(exc: NotFound) -> ApplicationError:
    error_type = _NOT_FOUND_BY_KIND.get(exc.kind, ErrorType.NOT_FOUND)
    return ApplicationError(str(exc), type=error_type, non_retryable=True)


def journey_not_found(message: str) -> ApplicationError:
    return ApplicationError(message, type=ErrorType.JOURNEY_NOT_FOUND, non_retryable=True)


def template_error(message: str) -> ApplicationError:
    return ApplicationError(message, type=ErrorType.TEMPLATE_ERROR, non_retryable=True)


def delivery_unavailable(message: str) -> ApplicationError:
    return ApplicationError(message, type=ErrorType.DELIVERY_UNAVAILABLE)


def deferred(count: int) -> ApplicationError:
    return ApplicationError(
        f"{count} sends deferred by the provider (4xx); retrying the chunk",
        type=ErrorType.DELIVERY_DEFERRED,
    )


def profiles_unavailable(count: int) -> ApplicationError:
    # The chunk comes back with backoff and sends to these once profiles load.
    return ApplicationError(
        f"{count} recipients have no profile now (store down, no cached copy under 24 h); "
        "retrying the chunk for them",
        type=ErrorType.PROFILES_UNAVAILABLE,
    )


def llm_quota(retry_after_s: float) -> ApplicationError:
    # Deferred, not failed: Temporal's retry timer (durable, server-side) brings the chunk back
    # once the provider's quota window has passed.
    return ApplicationError(
        f"LLM quota exhausted; chunk deferred {retry_after_s:.0f}s",
        type=ErrorType.LLM_QUOTA_EXHAUSTED,
        next_retry_delay=timedelta(seconds=retry_after_s),
    )


def awaiting_reconciliation(count: int, wait_s: float) -> ApplicationError:
    # Retryable after the wait: by then the provider's records show whether these went out.
    return ApplicationError(
        f"{count} sends of an earlier attempt are unclear; looking them up at the provider "
        f"in {wait_s:.0f}s",
        type=ErrorType.AWAITING_RECONCILIATION,
        next_retry_delay=timedelta(seconds=max(1.0, wait_s)),
    )


def webhook_failed(exc: ReceiverFailed) -> ApplicationError:
    # The message is fixed text and a status code (never what the receiver answered).
    if exc.permanent:
        return ApplicationError(str(exc), type=ErrorType.WEBHOOK_UNDELIVERABLE, non_retryable=True)
    delay = timedelta(seconds=exc.retry_after_s) if exc.retry_after_s else None
    return ApplicationError(str(exc), type=ErrorType.WEBHOOK_REFUSED, next_retry_delay=delay)


@contextmanager
def temporal_failures() -> Iterator[None]:
    """Raise the domain's failures as Temporal's: the mapping every activity shares."""
    try:
        yield
    except NotFound as exc:
        raise not_found(exc) from exc
    except JourneyNotDefined as exc:
        raise journey_not_found(str(exc)) from exc
    except TemplateRenderError as exc:
        raise template_error(str(exc)) from exc
    except (DeliveryUnavailable, LookupFailed) as exc:
        raise delivery_unavailable(str(exc)) from exc
    except LlmQuotaExhausted as exc:
        raise llm_quota(exc.retry_after_s) from exc
    except SendsDeferred as exc:
        raise deferred(exc.count) from exc
    except ProfilesUnavailable as exc:
        raise profiles_unavailable(exc.count) from exc
    except AwaitingReconciliation as exc:
        raise awaiting_reconciliation(exc.count, exc.wait_s) from exc
    except ReceiverFailed as exc:
        raise webhook_failed(exc) from exc
