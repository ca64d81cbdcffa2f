"""Maps domain and dependency errors to Temporal failures in one place."""

from __future__ import annotations

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
