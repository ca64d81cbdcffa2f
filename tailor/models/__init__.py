"""Table models, by domain. Importing the package defines every table on ``SQLModel.metadata``
(Alembic's ``env.py`` relies on it) and names them all here, so ``tailor.models.Send`` is the one
spelling. Request/response schemas live in ``api/schemas/``; payloads that cross Temporal live in
``tailor/payloads.py``: neither is a table."""

from tailor.models.ab_tests import AbTest, AbTestStatus
from tailor.models.accounts import ApiKey, AuditEntry, IdempotentRequest, Role
from tailor.models.analytics import CohortMark, CohortRollup, Conversion, SendRollup
from tailor.models.audience import ConsentRecord, ConsentStatus, Contact, Event
from tailor.models.base import UTCDateTime, utcnow
from tailor.models.campaigns import (
    DEFAULT_PROMPT,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Engagement,
    Generator,
    Holdout,
    HoldoutTreatment,
    Send,
    SendStatus,
)
from tailor.models.generation import (
    GenerationCache,
    LlmUsage,
    PiiIncident,
    ReviewItem,
    ReviewStatus,
)
from tailor.models.journeys import (
    DeadLetter,
    DeadLetterStatus,
    JourneyDefinition,
    JourneyRun,
    JourneyStatus,
    TriggerRule,
)
from tailor.models.outbound import (
    DeliveryStatus,
    EndpointFormat,
    EndpointStatus,
    OutboundDelivery,
    WebhookEndpoint,
)
from tailor.models.privacy import ErasedAddress, Erasure, ErasureSalt, ErasureStatus
from tailor.models.shop import Product, Template, TemplateVersion, Tenant
from tailor.models.tracking import EspEvent, TrackingHit

__all__ = [
    "SendRollup",
    "Conversion",
    "CohortRollup",
    "CohortMark",
    "AbTest",
    "AbTestStatus",
    "ApiKey",
    "AuditEntry",
    "IdempotentRequest",
    "Role",
    "Campaign",
    "CampaignKind",
    "CampaignStatus",
    "ConsentRecord",
    "ConsentStatus",
    "Contact",
    "DEFAULT_PROMPT",
    "DeadLetter",
    "DeadLetterStatus",
    "DeliveryStatus",
    "EndpointFormat",
    "EndpointStatus",
    "Engagement",
    "EspEvent",
    "ErasedAddress",
    "Erasure",
    "ErasureSalt",
    "ErasureStatus",
    "Event",
    "Generator",
    "Holdout",
    "HoldoutTreatment",
    "GenerationCache",
    "JourneyDefinition",
    "JourneyRun",
    "JourneyStatus",
    "LlmUsage",
    "OutboundDelivery",
    "PiiIncident",
    "Product",
    "ReviewItem",
    "ReviewStatus",
    "Send",
    "SendStatus",
    "Template",
    "TrackingHit",
    "TemplateVersion",
    "Tenant",
    "TriggerRule",
    "UTCDateTime",
    "WebhookEndpoint",
    "utcnow",
]
