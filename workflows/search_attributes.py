"""The search attributes operators filter Tailor's workflows on in the Temporal UI.

Defined beside the workflows, which set them on the child campaigns they start; the client
side (``tailor.temporal``) registers them with the server and sets them on the runs it starts.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

TENANT = SearchAttributeKey.for_keyword("TailorTenant")
CAMPAIGN = SearchAttributeKey.for_keyword("TailorCampaign")
KIND = SearchAttributeKey.for_keyword("TailorKind")
SEARCH_ATTRIBUTES = (TENANT, CAMPAIGN, KIND)


def campaign_search_attributes(tenant_id: str, campaign_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(TENANT, tenant_id),
            SearchAttributePair(CAMPAIGN, campaign_id),
            SearchAttributePair(KIND, "campaign"),
        ]
    )
