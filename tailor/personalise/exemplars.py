"""Exemplar retrieval for a chunk's clusters, cached, so a batch campaign runs one multi-hop
retrieval per kind of recipient rather than a vector query per person.

Runs on one thread of its own: embedding is CPU work, and local Qdrant's client is not meant
for concurrent callers. A retrieval failure is logged and the cluster goes on without
exemplars; retrieval improves an email, it never blocks one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rag.index import ExemplarIndex
from rag.retriever import ClusterQuery, Retrieval
from tailor.journeys.definitions import goal_brief
from tailor.observability.tracing import note, step
from tailor.personalise.context import CampaignContext
from tailor.personalise.generation import Cluster

log = logging.getLogger(__name__)


def cluster_goal(tier: str, has_cart: bool) -> str:
    """What an email for this cluster is for, in a batch campaign."""
    if has_cart:
        return "cart_abandonment"
    if tier == "low":
        return "re_engagement"
    return "promo"


class ClusterExemplars:
    def __init__(self, index: ExemplarIndex | None, size: int = 4096) -> None:
        self._index = index
        self._cache: OrderedDict[ClusterQuery, Retrieval] = OrderedDict()
        self._size = size
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="rag")
        self._ready = False

    def query(self, ctx: CampaignContext, cluster: Cluster) -> ClusterQuery:
        tier, category, _, has_cart = cluster
        goal = goal_brief(ctx.goal)[1] if ctx.goal else cluster_goal(tier, has_cart)
        return ClusterQuery(ctx.tenant.id, goal, category, tier, ctx.brand.tone)

    async def for_clusters(
        self, ctx: CampaignContext, clusters: set[Cluster]
    ) -> dict[Cluster, Retrieval]:
        if self._index is None:
            return {}
        with step("retrieve", clusters=len(clusters)) as span:
            found = await self._for_clusters(ctx, clusters)
            note(span, found=len(found))
        return found

    async def _for_clusters(
        self, ctx: CampaignContext, clusters: set[Cluster]
    ) -> dict[Cluster, Retrieval]:
        found: dict[Cluster, Retrieval] = {}
        for cluster in sorted(clusters):
            query = self.query(ctx, cluster)
            retrieval = self._cache.get(query)
            if retrieval is None:
                try:
                    retrieval = await asyncio.get_running_loop().run_in_executor(
                        self._thread, self._retrieve, query
                    )
                except Exception as exc:  # noqa: BLE001 - never block an email on retrieval
                    log.warning("exemplar retrieval failed (%s); cluster goes without",
                                type(exc).__name__)  # fmt: skip
                    continue
                self._cache[query] = retrieval
                if len(self._cache) > self._size:
                    self._cache.popitem(last=False)
            found[cluster] = retrieval
        return found

    def _retrieve(self, query: ClusterQuery) -> Retrieval:
        assert self._index is not None
        if not self._ready:
            self._index.ensure_corpus()
            self._ready = True
        return self._index.retriever().retrieve(query)


@dataclass(frozen=True)
class ClusterRetrievals:
    """Each recipient's retrieval, through their cluster."""

    clusters: dict[int, Cluster]  # contact id -> cluster
    by_cluster: dict[Cluster, Retrieval]

    def of(self, contact_id: int) -> Retrieval | None:
        cluster = self.clusters.get(contact_id)
        return self.by_cluster.get(cluster) if cluster is not None else None
