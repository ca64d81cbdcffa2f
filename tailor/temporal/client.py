"""Connecting to Temporal, task queues, and the search attributes operators filter on."""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from tailor.config import Settings

log = logging.getLogger(__name__)

TENANT = SearchAttributeKey.for_keyword("TailorTenant")
CAMPAIGN = SearchAttributeKey.for_keyword("TailorCampaign")
KIND = SearchAttributeKey.for_keyword("TailorKind")
SEARCH_ATTRIBUTES = (TENANT, CAMPAIGN, KIND)


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register Tailor's search attributes; a no-op when they exist or the server can't."""
    request = AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes={
            key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
        },
    )
    try:
        await client.operator_service.add_search_attributes(request)
    except RPCError as exc:
        if exc.status in (RPCStatusCode.ALREADY_EXISTS, RPCStatusCode.UNIMPLEMENTED):
            return
        raise


def campaign_search_attributes(tenant_id: str, campaign_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(TENANT, tenant_id),
            SearchAttributePair(CAMPAIGN, campaign_id),
            SearchAttributePair(KIND, "campaign"),
        ]
    )
