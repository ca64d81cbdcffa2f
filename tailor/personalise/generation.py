"""Per-cluster LLM generation with a cache, so a campaign calls a model once per kind of
recipient, not once per recipient.

Recipients are grouped by non-identifying features (engagement tier, favourite category, device
class, whether they have a cart). Each group gets one LLM-written email with ``{{first_name}}``
and ``{{cart_item}}`` placeholders that the system fills per recipient, so every email still
reads personal while no personal data reaches a provider. Content is cached by (template
version, prompt version, cluster) in the database, shared by all workers and campaigns; every
lookup is recorded in ``llm_usage`` as a call (tokens, dollars) or a cache hit.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from rag.retriever import Retrieval
from tailor.db import Database
from tailor.journeys.definitions import goal_brief
from tailor.models import Contact, ReviewStatus, utcnow
from tailor.observability.metrics import (
    AGENT_RETRIES,
    GUARDRAIL,
    LLM_COST,
    LLM_TOKENS,
    PERSONALIZATION,
    PII,
    QUALITY,
    RELEVANCE,
    WRITER,
)
from tailor.observability.tracing import note, step
from tailor.personalise.brand import brand_violations
from tailor.personalise.budget import DailyBudget
from tailor.personalise.context import CampaignContext
from tailor.personalise.evaluator import Evaluation, evaluate
from tailor.personalise.llm import Generation, LlmExecutor
from tailor.personalise.pii import PiiScanner
from tailor.personalise.prompts import (
    ClusterRequest,
    ExemplarFact,
    GeneratedEmail,
    ProductFact,
    Prompt,
    alternate_prompt,
    get_prompt,
)
from tailor.personalise.rules import URL, Catalog, engagement_tier, safe_name
from tailor.store.generation import (
    CachedContent,
    cache_content,
    cached_content,
    record_pii_incident,
    record_usage,
)
from tailor.store.reviews import ClusterReview, cluster_review, open_review, review_by_id

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class ClusterContent:
    provider: str  # "openai", "anthropic", ...
    model: str
    email: GeneratedEmail
    evaluation: Evaluation | None = None  # None when served from the cache
    review: ClusterReview | None = None  # set when a person decides (or must decide) on it

    @property
    def held(self) -> bool:
        """Awaiting a person's decision: its recipients wait, nothing is sent."""
        return self.review is not None and self.review.status is ReviewStatus.PENDING

    @property
    def usable(self) -> bool:
        """May be sent: not refused by a reviewer and not waiting for one."""
        return self.review is None or self.review.status is ReviewStatus.APPROVED


def reviewed(review: ClusterReview) -> ClusterContent:
    return ClusterContent(
        review.provider, review.model, GeneratedEmail.model_validate(review.content), None, review
    )


Cluster = tuple[str, str, str, bool]  # engagement tier, top category, device, has a cart


def cluster_of(contact: Contact, catalog: Catalog, now: datetime) -> Cluster:
    top = catalog.top_category(contact)
    device = "mobile" if contact.device == "mobile" else "desktop"
    has_cart = any(sku in catalog.by_sku for sku in contact.cart_items)
    return engagement_tier(contact, now), top, device, has_cart


def clusters_of(contacts: Iterable[Contact], catalog: Catalog, now: datetime) -> dict[int, Cluster]:
    """Each contact's cluster, by contact id: computed once per chunk, shared by retrieval and
    generation so both see the same grouping."""
    return {c.id or 0: cluster_of(c, catalog, now) for c in contacts}


def fill(text: str, contact: Contact, catalog: Catalog) -> str:
    """Per-recipient values into the cluster's text; links are the system's job, never the
    model's, so any URL the model wrote is dropped."""
    cart = [catalog.by_sku[s].name for s in contact.cart_items if s in catalog.by_sku]
    values = {
        "first_name": safe_name(contact.first_name) or "there",
        "cart_item": cart[0] if cart else "",
    }
    text = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), text)
    return URL.sub("", text).strip()


class ClusterGenerator:
    def __init__(
        self,
        db: Database,
        executor: LlmExecutor,
        *,
        daily_budget_usd: float,
        alert_ratio: float,
        pii: PiiScanner,
        memory: int = 2048,
    ) -> None:
        self._db = db
        self._executor = executor
        self._pii = pii
        self._budget = DailyBudget(db, default_usd=daily_budget_usd, alert_ratio=alert_ratio)
        self._memory: OrderedDict[str, ClusterContent] = OrderedDict()
        self._size = memory
        # Chunks running side by side often need the same cluster: one call serves them all.
        self._in_flight: dict[str, asyncio.Future[None]] = {}

    @property
    def enabled(self) -> bool:
        return self._executor.enabled

    def _request(
        self, ctx: CampaignContext, cluster: Cluster, retrieval: Retrieval | None
    ) -> ClusterRequest:
        tier, top, device, has_cart = cluster
        picks = ctx.catalog.by_category.get(top, [])[:3]
        goal = "seasonal promotion"
        if ctx.goal:
            goal = goal_brief(ctx.goal)[0]
        elif has_cart:
            goal = "cart reminder: the reader left {{cart_item}} in their cart"
        return ClusterRequest(
            tenant_name=ctx.tenant.name,
            campaign_goal=goal,
            tier=tier,
            top_category=top,
            device=device,
            locale="en",
            recommendations=[ProductFact(v.name, v.price, v.url)
                             for v in map(ctx.catalog.view, picks)],
            template_subject=ctx.version.subject,
            template_body=ctx.version.body,
            avoid_phrases=ctx.brand.banned_phrases,
            tone=ctx.brand.tone,
            exemplars=[ExemplarFact(e.subject, e.body[:600], e.cta, e.angle, e.tone)
                       for e in (retrieval.exemplars if retrieval else [])],
        )  # fmt: skip

    async def for_contacts(
        self,
        ctx: CampaignContext,
        clusters: dict[int, Cluster],
        now: datetime,
        retrievals: dict[Cluster, Retrieval] | None = None,
    ) -> dict[int, ClusterContent]:
        """Content per contact id, for contacts given with their cluster (``clusters_of``);
        contacts whose cluster no LLM tier could write are absent (they get the rules tier).
        Raises ``LlmQuotaExhausted`` to have the chunk deferred."""
        if not self.enabled or not clusters:
            return {}
        prompt = get_prompt(ctx.prompt_version)
        # Checked once per chunk: a chunk can overshoot the cap by its own few calls.
        may_call = await self._budget.allows_calls(ctx.tenant, now)
        usage: list[dict[str, object]] = []
        by_cluster: dict[Cluster, ClusterContent | None] = {}
        try:
            await self._fill_clusters(
                ctx, prompt, clusters, by_cluster, usage, may_call, now, retrievals or {}
            )
        finally:  # calls made before a quota refusal still cost money: record them
            if usage:
                async with self._db.write() as conn:
                    await record_usage(conn, usage=usage)
        return {
            contact_id: content
            for contact_id, cluster in clusters.items()
            if (content := by_cluster[cluster]) is not None
        }

    async def _fill_clusters(
        self,
        ctx: CampaignContext,
        prompt: Prompt,
        clusters: dict[int, Cluster],
        by_cluster: dict[Cluster, ClusterContent | None],
        usage: list[dict[str, object]],
        may_call: bool,
        now: datetime,
        retrievals: dict[Cluster, Retrieval],
    ) -> None:
        for cluster in dict.fromkeys(clusters.values()):
            request = self._request(ctx, cluster, retrievals.get(cluster))
            key = hashlib.sha256(
                f"{ctx.version.id}|{prompt.version}|{request.cache_key()}".encode()
            ).hexdigest()
            content = await self._cached(key)
            while content is None and key in self._in_flight:
                await asyncio.shield(self._in_flight[key])
                content = await self._cached(key)
            if content is not None:
                usage.append(self._usage(ctx, prompt.version, content, None))
            else:
                # Claimed before the next await: a chunk alongside that misses the cache too
                # waits for this one instead of paying for a second call.
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._in_flight[key] = future
                try:
                    # Flagged for this campaign already: wait for (or use) the person's
                    # decision rather than pay for another attempt.
                    async with self._db.read() as conn:
                        review = await cluster_review(
                            conn, campaign_id=ctx.campaign_id, cluster_key=key
                        )
                    if review is not None:
                        content = reviewed(review)
                    elif may_call:
                        content = await self._generate(
                            key, ctx, cluster, request, prompt, now, usage
                        )
                finally:
                    future.set_result(None)
                    del self._in_flight[key]
            by_cluster[cluster] = content

    async def _without_pii(self, ctx: CampaignContext, content: ClusterContent) -> ClusterContent:
        """Redact any PII the model wrote (it never saw any, but may invent or echo some) and
        record an incident with the entity types."""
        fields = content.email.model_dump()
        found: set[str] = set()
        for name, value in fields.items():
            fields[name], entities = await asyncio.to_thread(self._pii.redact, value)
            found.update(entities)
        if not found:
            return content
        for entity in found:
            PII.labels(entity).inc()
        log.warning("redacted %s from %s content for campaign %s", sorted(found),
                    content.provider, ctx.campaign_id)  # fmt: skip
        async with self._db.write() as conn:
            await record_pii_incident(
                conn, tenant_id=ctx.tenant.id, campaign_id=ctx.campaign_id,
                source=f"llm:{content.provider}:{content.model}", entities=sorted(found),
            )  # fmt: skip
        return ClusterContent(
            content.provider, content.model, GeneratedEmail.model_validate(fields),
            content.evaluation,
        )  # fmt: skip

    async def _generate(
        self,
        key: str,
        ctx: CampaignContext,
        cluster: Cluster,
        request: ClusterRequest,
        prompt: Prompt,
        now: datetime,
        usage: list[dict[str, object]],
    ) -> ClusterContent | None:
        """Write, evaluate, regenerate once with another prompt version if the evaluator
        refuses; redact and cache what passes. Content still below the quality bar or off-brand
        goes to the review queue (its recipients are held); content with a wrong fact or off
        topic is dropped. None: the cluster gets the rules tier. The caller holds the cluster's
        in-flight claim, so chunks waiting on it resume once it is cached or under review."""
        for_review: tuple[ClusterContent, str] | None = None
        started = time.perf_counter()
        tier = "rules"  # what the cluster ends up with, for the latency histogram
        try:
            for number, attempt in enumerate((prompt, alternate_prompt(prompt))):
                with step("generate", cluster="/".join(map(str, cluster)), attempt=number + 1,
                          prompt=attempt.version) as span:  # fmt: skip
                    generation = await self._executor.generate(request, attempt)
                    note(span, tier=generation.tier if generation is not None else "rules")
                if generation is None:
                    break
                if number:
                    AGENT_RETRIES.labels(WRITER, generation.tier).inc()
                _count_generation(ctx.tenant.id, generation)
                made = ClusterContent(generation.tier, generation.model, generation.email)
                usage.append(self._usage(ctx, attempt.version, made, generation))
                with step("evaluate", tier=generation.tier) as span:
                    evaluation = evaluate(generation.email, request, now)
                    evaluation = Evaluation(
                        evaluation.quality, evaluation.relevance, evaluation.violations,
                        brand_violations(generation.email, ctx.brand),
                    )  # fmt: skip
                    note(span, verdict=evaluation.outcome, quality=evaluation.quality,
                         relevance=evaluation.relevance, violations=len(evaluation.violations),
                         brand=len(evaluation.brand))  # fmt: skip
                _count_evaluation(ctx.tenant.id, generation.tier, evaluation)
                content = ClusterContent(made.provider, made.model, made.email, evaluation)
                if evaluation.passed:
                    tier = generation.tier
                    content = await self._without_pii(ctx, content)
                    await self._store(key, ctx, prompt.version, content)
                    return content
                if evaluation.needs_review:
                    for_review = (content, attempt.version)
                log.warning("cluster content refused (%s, %s): %s", generation.tier,
                            attempt.version, evaluation.verdict())  # fmt: skip
        finally:
            PERSONALIZATION.labels(tier).observe(time.perf_counter() - started)
        if for_review is None:
            return None
        return await self._open_review(key, ctx, cluster, *for_review)

    async def _open_review(
        self,
        key: str,
        ctx: CampaignContext,
        cluster: Cluster,
        content: ClusterContent,
        prompt_version: str,
    ) -> ClusterContent:
        content = await self._without_pii(ctx, content)
        evaluation = content.evaluation
        assert evaluation is not None
        tier, top, device, has_cart = cluster
        async with self._db.write() as conn:
            review = await open_review(
                conn, tenant_id=ctx.tenant.id, campaign_id=ctx.campaign_id, cluster_key=key,
                cluster={"tier": tier, "top_category": top, "device": device,
                         "has_cart": has_cart},
                provider=content.provider, model=content.model, prompt_version=prompt_version,
                content=content.email.model_dump(), evaluation=evaluation.as_dict(),
                reason=evaluation.verdict(),
            )  # fmt: skip
        log.warning("campaign %s: cluster content sent to review %s (%s)", ctx.campaign_id,
                    review.id, evaluation.verdict())  # fmt: skip
        return ClusterContent(content.provider, content.model, content.email, evaluation, review)

    async def from_reviews(self, review_ids: set[int]) -> dict[int, ClusterContent]:
        """Decided reviews by id, for sends that were held on them."""
        contents: dict[int, ClusterContent] = {}
        async with self._db.read() as conn:
            for review_id in review_ids:
                review = await review_by_id(conn, review_id=review_id)
                if review is not None:
                    contents[review_id] = reviewed(review)
        return contents

    def _usage(
        self, ctx: CampaignContext, prompt_version: str, content: ClusterContent,
        generation: Generation | None,
    ) -> dict[str, object]:  # fmt: skip
        now = utcnow()
        return {
            "tenant_id": ctx.tenant.id,
            "campaign_id": ctx.campaign_id,
            "provider": content.provider,
            "model": content.model,
            "prompt_version": prompt_version,
            "cache_hit": generation is None,
            "input_tokens": generation.usage.input_tokens if generation else 0,
            "output_tokens": generation.usage.output_tokens if generation else 0,
            "cost_usd": generation.cost_usd if generation else 0.0,
            "day": now.date().isoformat(),
            "created_at": now,
        }

    async def _cached(self, key: str) -> ClusterContent | None:
        content = self._memory.get(key)
        if content is not None:
            self._memory.move_to_end(key)
            return content
        async with self._db.read() as conn:
            row = await cached_content(conn, key=key)
        if row is None:
            # Written to memory by another chunk while we were reading the database?
            return self._memory.get(key)
        content = ClusterContent(
            row.provider, row.model, GeneratedEmail.model_validate(row.content)
        )
        self._remember(key, content)
        return content

    async def _store(
        self, key: str, ctx: CampaignContext, prompt_version: str, content: ClusterContent
    ) -> None:
        self._remember(key, content)
        async with self._db.write() as conn:
            await cache_content(
                conn, key=key, tenant_id=ctx.tenant.id, template_version_id=ctx.version.id,
                prompt_version=prompt_version,
                cached=CachedContent(content.provider, content.model, content.email.model_dump()),
            )  # fmt: skip

    def _remember(self, key: str, content: ClusterContent) -> None:
        self._memory[key] = content
        if len(self._memory) > self._size:
            self._memory.popitem(last=False)


def _count_generation(tenant_id: str, generation: Generation) -> None:
    LLM_TOKENS.labels(tenant_id, generation.tier, "input").inc(generation.usage.input_tokens)
    LLM_TOKENS.labels(tenant_id, generation.tier, "output").inc(generation.usage.output_tokens)
    LLM_COST.labels(tenant_id, generation.tier).inc(generation.cost_usd)


def _count_evaluation(tenant_id: str, tier: str, evaluation: Evaluation) -> None:
    QUALITY.labels(tier).observe(evaluation.quality)
    RELEVANCE.labels(tier).observe(evaluation.relevance)
    GUARDRAIL.labels(tenant_id, evaluation.outcome).inc()
