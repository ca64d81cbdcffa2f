"""HTTP email providers (SendGrid, Mailgun, Amazon SES) behind one interface (``base.py``).

Adapters are imported when built, so importing the base types (workflows, payloads) does not
load httpx, botocore or the settings; ``LookupFailed`` (``http.py``) is loaded when first named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tailor.delivery.providers.base import (
    BatchResult,
    HttpProvider,
    OutgoingEmail,
    RecipientResult,
    Verdict,
)

if TYPE_CHECKING:
    from tailor.config import Settings
    from tailor.delivery.providers.http import LookupFailed

__all__ = [
    "HTTP_PROVIDERS",
    "BatchResult",
    "HttpProvider",
    "LookupFailed",
    "OutgoingEmail",
    "RecipientResult",
    "Verdict",
    "http_provider",
]

HTTP_PROVIDERS = ("sendgrid", "mailgun", "ses")


def __getattr__(name: str) -> Any:
    if name == "LookupFailed":  # lazily: http.py imports httpx
        from tailor.delivery.providers.http import LookupFailed

        return LookupFailed
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _required(value: str | None, setting: str, provider: str) -> str:
    if not value:
        raise ValueError(f"{setting} is not set (needed by the {provider} provider)")
    return value


def http_provider(name: str, settings: Settings) -> HttpProvider:
    """The adapter for ``name``, configured from settings. Raises ValueError naming the missing
    setting, or for a name that is not an HTTP provider."""
    timeout_s = settings.provider_timeout_s
    if name == "sendgrid":
        from tailor.delivery.providers.sendgrid import SendGridProvider

        return SendGridProvider(
            api_key=_required(settings.sendgrid_api_key, "TAILOR_SENDGRID_API_KEY", name),
            base_url=settings.sendgrid_base_url,
            timeout_s=timeout_s,
        )
    if name == "mailgun":
        from tailor.delivery.providers.mailgun import MailgunProvider

        return MailgunProvider(
            api_key=_required(settings.mailgun_api_key, "TAILOR_MAILGUN_API_KEY", name),
            domain=_required(settings.mailgun_domain, "TAILOR_MAILGUN_DOMAIN", name),
            base_url=settings.mailgun_base_url,
            timeout_s=timeout_s,
        )
    if name == "ses":
        from tailor.delivery.providers.ses import SesProvider

        return SesProvider(
            access_key_id=_required(settings.ses_access_key_id, "TAILOR_SES_ACCESS_KEY_ID", name),
            secret_access_key=_required(
                settings.ses_secret_access_key, "TAILOR_SES_SECRET_ACCESS_KEY", name
            ),
            region=settings.ses_region,
            endpoint_url=settings.ses_endpoint_url,
            timeout_s=timeout_s,
        )
    raise ValueError(f"unknown HTTP email provider {name!r}: expected one of {HTTP_PROVIDERS}")
