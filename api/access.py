"""Who may call what: the one table of routes and the roles allowed on each.

Every route of the app has a row here; ``create_app`` refuses to start with a route that has none,
and ``tests/test_access.py`` walks every route of the OpenAPI document with every role and checks
401/403/2xx against this table. ``None`` marks a public route: health checks, and pages or hooks
that carry their own signature (the unsubscribe token).
"""

from __future__ import annotations

from typing import Final

from tailor.models import Role

ADMIN, MARKETER, REVIEWER, ANALYST, INGEST, PLATFORM = (
    Role.ADMIN,
    Role.MARKETER,
    Role.REVIEWER,
    Role.ANALYST,
    Role.INGEST,
    Role.PLATFORM,
)

#: Everyone of the tenant who reads: all but ingest-only keys.
READ: Final = frozenset({ADMIN, MARKETER, REVIEWER, ANALYST})
#: Who runs the marketing: contacts, templates, campaigns, journeys, A/B tests.
MARKET: Final = frozenset({ADMIN, MARKETER})
#: Who decides held emails and approves templates.
REVIEW: Final = frozenset({ADMIN, REVIEWER})
#: Keys, settings, catalog, the audit log.
ADMINISTER: Final = frozenset({ADMIN})
#: Segment-style ingestion: ingest keys, and the people who may also write contacts.
EVENTS: Final = frozenset({ADMIN, MARKETER, INGEST})
#: Onboarding tenants: platform keys only.
ONBOARD: Final = frozenset({PLATFORM})
#: Operating the service across tenants (metrics): platform keys only.
OPERATE: Final = frozenset({PLATFORM})

ROUTE_ROLES: Final[dict[tuple[str, str], frozenset[Role] | None]] = {
    ("GET", "/healthz"): None,
    # Unsubscribe pages: the signed token in the path is the credential.
    ("GET", "/v1/unsubscribe/{token}"): None,
    ("POST", "/v1/unsubscribe/{token}"): None,
    # Open pixel and click redirect: the signed token in the path is the credential.
    ("GET", "/t/o/{token}"): None,
    ("HEAD", "/t/o/{token}"): None,
    ("GET", "/t/c/{token}"): None,
    ("HEAD", "/t/c/{token}"): None,
    # ESP event webhooks: the provider's signature over the raw body is the credential.
    ("POST", "/v1/webhooks/sendgrid"): None,
    ("POST", "/v1/webhooks/mailgun"): None,
    ("POST", "/v1/webhooks/ses"): None,
    # Contacts
    ("POST", "/v1/contacts"): MARKET,
    ("GET", "/v1/contacts"): READ,
    ("GET", "/v1/contacts/{contact_id}"): READ,
    ("POST", "/v1/contacts/{contact_id}/consent"): MARKET,
    # A data subject's rights: erasure and a copy of their data.
    ("DELETE", "/v1/contacts/{contact_id}"): MARKET,
    ("GET", "/v1/contacts/{contact_id}/erasure"): READ,
    ("GET", "/v1/contacts/{contact_id}/export"): MARKET,
    # Events
    ("POST", "/v1/track"): EVENTS,
    ("POST", "/v1/identify"): EVENTS,
    ("POST", "/v1/batch"): EVENTS,
    ("POST", "/v1/events"): EVENTS,
    ("POST", "/v1/events/engagement"): EVENTS,
    # Journeys
    ("GET", "/v1/journeys"): READ,
    ("POST", "/v1/journeys"): MARKET,
    ("POST", "/v1/journeys/builtins"): MARKET,
    ("GET", "/v1/journeys/runs"): READ,
    ("GET", "/v1/trigger-rules"): READ,
    ("POST", "/v1/trigger-rules"): MARKET,
    ("GET", "/v1/dead-letters"): READ,
    ("POST", "/v1/dead-letters/{dead_letter_id}/replay"): MARKET,
    # Templates
    ("GET", "/v1/templates"): READ,
    ("POST", "/v1/templates"): MARKET,
    ("GET", "/v1/templates/default"): READ,
    ("PUT", "/v1/templates/default"): MARKET,
    ("POST", "/v1/templates/{template_id}/versions"): MARKET,
    ("GET", "/v1/templates/{template_id}"): READ,
    # Campaigns
    ("GET", "/v1/campaigns"): READ,
    ("POST", "/v1/campaigns"): MARKET,
    ("GET", "/v1/campaigns/{campaign_id}"): READ,
    ("POST", "/v1/campaigns/{campaign_id}/pause"): MARKET,
    ("POST", "/v1/campaigns/{campaign_id}/resume"): MARKET,
    ("POST", "/v1/campaigns/{campaign_id}/cancel"): MARKET,
    ("GET", "/v1/campaigns/{campaign_id}/sends"): READ,
    ("GET", "/v1/sends/{send_id}/explain"): READ,
    # A/B tests
    ("GET", "/v1/ab-tests"): READ,
    ("POST", "/v1/ab-tests"): MARKET,
    ("GET", "/v1/ab-tests/{test_id}"): READ,
    ("POST", "/v1/ab-tests/{test_id}/decide"): MARKET,
    ("POST", "/v1/ab-tests/{test_id}/winner"): MARKET,
    ("POST", "/v1/ab-tests/{test_id}/cancel"): MARKET,
    # The tenant's settings
    ("GET", "/v1/tenant/delivery"): READ,
    ("PUT", "/v1/tenant/delivery"): ADMINISTER,
    ("GET", "/v1/tenant/settings"): READ,
    ("PATCH", "/v1/tenant/settings"): ADMINISTER,
    # The audit log
    ("GET", "/v1/audit"): ADMINISTER,
    # The consent ledger, exported with its hash chains
    ("GET", "/v1/consent/ledger"): ADMINISTER,
    ("GET", "/v1/consent/lapsing"): READ,
    # Review queue
    ("GET", "/v1/reviews"): READ,
    ("GET", "/v1/reviews/{review_id}"): READ,
    ("POST", "/v1/reviews/{review_id}/approve"): REVIEW,
    ("POST", "/v1/reviews/{review_id}/reject"): REVIEW,
    # Usage
    ("GET", "/v1/usage/llm"): READ,
    ("GET", "/v1/reports/campaigns/{campaign_id}"): READ,
    ("GET", "/v1/reports/journeys/{journey_key}"): READ,
    ("GET", "/v1/reports/ab-tests/{test_id}"): READ,
    ("GET", "/v1/reports/deliverability"): READ,
    ("GET", "/v1/reports/cohorts"): READ,
    # API keys
    ("GET", "/v1/keys"): ADMINISTER,
    ("POST", "/v1/keys"): ADMINISTER,
    ("POST", "/v1/keys/{key_id}/revoke"): ADMINISTER,
    # Outbound webhooks: endpoints (their secrets, where the tenant's data goes) are the
    # admins'; everyone who reads may see them and their dead letters.
    ("GET", "/v1/webhook-endpoints"): READ,
    ("POST", "/v1/webhook-endpoints"): ADMINISTER,
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): READ,
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): ADMINISTER,
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): ADMINISTER,
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): ADMINISTER,
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/test"): ADMINISTER,
    ("GET", "/v1/webhook-endpoints/{endpoint_id}/dead-letters"): READ,
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/dead-letters/replay"): ADMINISTER,
    # Onboarding
    ("POST", "/v1/platform/tenants"): ONBOARD,
    # Operations: Prometheus scrapes every tenant's figures with a platform key.
    ("GET", "/metrics"): OPERATE,
    # Product catalog
    ("GET", "/v1/products"): READ,
    ("POST", "/v1/products"): ADMINISTER,
    ("POST", "/v1/products/csv"): ADMINISTER,
    ("DELETE", "/v1/products/{sku}"): ADMINISTER,
}


#: Routes that also take a key as the HTTP Basic username, as Segment sends its write key.
BASIC_AUTH_ROUTES: Final = frozenset({"/v1/track", "/v1/identify", "/v1/batch", "/v1/events"})


#: Ingestion: each accepted call is kept as the events it stored (with their message ids), so
#: the audit log records only its refusals; an entry per event would double every write.
AUDITED_WHEN_REFUSED_ONLY: Final = frozenset(
    {"/v1/track", "/v1/identify", "/v1/batch", "/v1/events", "/v1/events/engagement"}
)


class MissingRule(RuntimeError):
    """A route was added without a row in ROUTE_ROLES."""


def roles_for(method: str, path: str) -> frozenset[Role] | None:
    """The roles allowed on a route (None: public). Raises MissingRule for an unknown route."""
    try:
        return ROUTE_ROLES[(method.upper(), path)]
    except KeyError:
        raise MissingRule(
            f"{method.upper()} {path} has no access rule: add it to ROUTE_ROLES in api/access.py"
        ) from None
