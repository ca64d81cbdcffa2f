"""Relevance of generated emails with and without retrieved exemplars.

For each labelled query (a marketer's brief for a category and goal) the same writer drafts
one email without exemplars and one with the multi-hop retrieval's exemplars; relevance is the
cosine similarity between the email and the brief in the embedding space. The writer is the
LLM executor when a model is configured, else the rules tier (which borrows only the top
exemplar's call to action, so its difference is small by construction).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from rag.corpus import Exemplar
from rag.eval import EVAL_TENANT, LabelledQuery
from rag.index import ExemplarIndex
from rag.retriever import ClusterQuery
from tailor.demo.data import DEMO_TEMPLATE
from tailor.models import Contact, Product, TemplateVersion
from tailor.personalise.llm import LlmExecutor
from tailor.personalise.prompts import DEFAULT_PROMPT, ClusterRequest, ExemplarFact, get_prompt
from tailor.personalise.rules import Catalog, ExemplarHint, RuleBasedExecutor

EVAL_SHOP = "Eval Outfitters"
EVAL_SHOP_URL = "https://shop.eval-outfitters.com"


@dataclass(frozen=True)
class Draft:
    subject: str
    body: str
    cta: str

    def text(self) -> str:
        return f"{self.subject}\n{self.body}\n{self.cta}"


class Writer(Protocol):
    """Drafts one email for a brief, optionally with exemplars to borrow from."""

    name: str

    async def write(self, query: LabelledQuery, exemplars: Sequence[Exemplar]) -> Draft: ...


class RulesWriter:
    def __init__(self) -> None:
        self.name = "rules tier"
        self._executor = RuleBasedExecutor()
        self._version = TemplateVersion.model_validate(
            {"id": 0, "template_id": 0, "version": 1, **DEMO_TEMPLATE}
        )
        self._now = datetime(2026, 1, 15, tzinfo=UTC)

    def _reader(self, query: LabelledQuery) -> tuple[Contact, Catalog]:
        """A reader who fits the brief: a cart for cart abandonment, dormant for
        re-engagement, a regular otherwise; one product in the brief's category."""
        sku = f"{query.category[:3].upper()}-1"
        product = Product(tenant_id=EVAL_TENANT, sku=sku, name=f"{query.category} favourite",
                          category=query.category, price_cents=4_900,
                          url=f"{EVAL_SHOP_URL}/p/{sku}")  # fmt: skip
        dormant = query.goal == "re_engagement"
        contact = Contact(
            tenant_id=EVAL_TENANT, email="reader@eval-outfitters.com", first_name="Sam",
            engagement_score=10 if dormant else 60,
            last_open_at=None if dormant else self._now,
            preferred_categories=[query.category],
            cart_items=[sku] if query.goal == "cart_abandonment" else [],
        )  # fmt: skip
        return contact, Catalog([product], EVAL_SHOP_URL)

    async def write(self, query: LabelledQuery, exemplars: Sequence[Exemplar]) -> Draft:
        contact, catalog = self._reader(query)
        hint = ExemplarHint(exemplars[0].id, exemplars[0].cta) if exemplars else None
        email = self._executor.personalise(
            contact=contact, version=self._version, catalog=catalog, tenant_name=EVAL_SHOP,
            now=self._now, exemplar=hint,
        )  # fmt: skip
        return Draft(email.subject, email.body, email.cta_text)


class LlmWriter:
    def __init__(self, executor: LlmExecutor, name: str) -> None:
        self.name = name
        self._executor = executor
        self._prompt = get_prompt(DEFAULT_PROMPT)

    async def write(self, query: LabelledQuery, exemplars: Sequence[Exemplar]) -> Draft:
        request = ClusterRequest(
            tenant_name=EVAL_SHOP, campaign_goal=query.text, tier="mid",
            top_category=query.category, device="desktop", locale="en",
            template_subject=DEMO_TEMPLATE["subject"], template_body=DEMO_TEMPLATE["body"],
            exemplars=[ExemplarFact(e.subject, e.body[:600], e.cta, e.angle, e.tone)
                       for e in exemplars],
        )  # fmt: skip
        generation = await self._executor.generate(request, self._prompt)
        if generation is None:
            raise RuntimeError("no LLM tier answered; check the model settings and try again")
        email = generation.email
        return Draft(email.subject, email.body, email.cta_text)


async def generation_relevance(
    index: ExemplarIndex,
    queries: Sequence[LabelledQuery],
    writer: Writer,
    on_query: Callable[[], None] = lambda: None,
) -> dict[str, float | str]:
    retriever = index.retriever()
    without: list[Draft] = []
    with_exemplars: list[Draft] = []
    for query in queries:
        retrieval = retriever.retrieve(ClusterQuery(EVAL_TENANT, query.goal, query.category,
                                                    text=query.text))  # fmt: skip
        without.append(await writer.write(query, []))
        with_exemplars.append(await writer.write(query, retrieval.exemplars))
        on_query()
    encode = index.embedder.encode
    briefs = encode([q.text for q in queries])

    def mean_similarity(drafts: list[Draft]) -> float:
        vectors = encode([d.text() for d in drafts])
        return statistics.mean(
            sum(a * b for a, b in zip(brief, email, strict=True))
            for brief, email in zip(briefs, vectors, strict=True)
        )

    return {
        "relevance_writer": writer.name,
        "relevance_without_retrieval": round(mean_similarity(without), 4),
        "relevance_with_retrieval": round(mean_similarity(with_exemplars), 4),
    }
