"""The worker's providers, built once from settings: the ones with credentials are usable."""

from __future__ import annotations

from tailor.config import Settings
from tailor.delivery.providers import http_provider
from tailor.delivery.providers.base import HttpProvider
from tailor.delivery.providers.router import KNOWN_PROVIDERS, SMTP, ProviderRouter
from tailor.delivery.smtp import SmtpDelivery


def configured_http_providers(settings: Settings) -> list[str]:
    """HTTP providers whose credentials are set (a tenant may name any of them)."""
    names = []
    if settings.sendgrid_api_key:
        names.append("sendgrid")
    if settings.mailgun_api_key and settings.mailgun_domain:
        names.append("mailgun")
    if settings.ses_access_key_id and settings.ses_secret_access_key:
        names.append("ses")
    return names


def build_router(settings: Settings) -> ProviderRouter:
    """Raises ValueError, naming the setting to fix, for a default order it cannot serve."""
    unknown = [n for n in settings.providers if n not in KNOWN_PROVIDERS]
    if unknown:
        raise ValueError(
            f"TAILOR_PROVIDERS names unknown providers {unknown}; use {list(KNOWN_PROVIDERS)}"
        )
    names = set(configured_http_providers(settings)) | {
        n for n in settings.providers if n != SMTP
    }  # a provider in the default order must be configured: http_provider says what is missing
    http: dict[str, HttpProvider] = {name: http_provider(name, settings) for name in sorted(names)}
    return ProviderRouter(
        http,
        default_order=settings.providers,
        failure_threshold=settings.provider_failure_threshold,
        health_interval_s=settings.provider_health_interval_s,
        smtp_health=SmtpDelivery(settings).health,
    )
