"""Connecting to Temporal, and registering the search attributes operators filter on."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from tailor.config import Settings
from tailor.observability import tracing
from workflows.search_attributes import SEARCH_ATTRIBUTES


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """With tracing on, the client carries the trace into workflows and activities, and a
    worker made from it continues them."""
    traced = tracing.active()
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        runtime=runtime,
        interceptors=traced.interceptors() if traced is not None else [],
    )


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
