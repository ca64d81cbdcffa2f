"""Agentic multi-hop retrieval of exemplar emails for one cluster of recipients.

Hop 1 embeds who the readers are and what the campaign wants, and takes the nearest exemplars.
The agent then looks at what came back and asks for what is missing, one follow-up query per
gap, at most ``max_hops`` of them:

- **goal fit**: fewer than two exemplars written for this goal (a welcome is not a promo);
- **category fit**: fewer than two from the readers' category;
- **persuasion**: the angle this goal needs most is absent (a cart reminder wants urgency and
  social proof, a launch wants social proof, a re-engagement a clear benefit, ...);
- **tone**: a formal brand with no formal exemplar.

Results are merged, deduplicated, ranked (similarity, fit, observed click rate) and trimmed to a
token budget. Every hop is returned for the send's "why this email" trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.corpus import Exemplar
from rag.embedder import Embedder
from rag.store import ExemplarStore, Hit

GOAL_WORDS = {
    "welcome": "welcome email for a new subscriber",
    "cart_abandonment": "reminder about an item left in the shopping cart",
    "re_engagement": "win-back email for a customer who has not visited in a while",
    "milestone": "thank-you email for a customer anniversary",
    "promo": "seasonal sale promotion",
    "product_launch": "launch announcement for a new product",
}
TIER_WORDS = {
    "high": "loyal, highly engaged customers",
    "mid": "occasional customers",
    "low": "customers who rarely open our emails",
}
ANGLE_WORDS = {
    "urgency": "limited stock, the offer ends soon",
    "social_proof": "customers love it, thousands of five-star reviews",
    "benefit": "what it does for you, the clear benefit",
    "story": "the story behind how it was made",
    "how_to": "a short guide on how to use it",
}
# The angle each goal needs most, in order of preference.
NEEDED_ANGLES = {
    "welcome": ("benefit",),
    "cart_abandonment": ("urgency", "social_proof"),
    "re_engagement": ("benefit",),
    "milestone": ("story",),
    "promo": ("urgency",),
    "product_launch": ("social_proof",),
}


@dataclass(frozen=True)
class ClusterQuery:
    tenant_id: str
    goal: str
    category: str
    tier: str = "mid"
    tone: str = "friendly"
    language: str = "en"
    text: str = ""  # free text to search with instead of the cluster's description

    def describe(self) -> str:
        if self.text:
            return self.text
        return (
            f"{GOAL_WORDS.get(self.goal, self.goal)} for {TIER_WORDS.get(self.tier, 'customers')}"
            f" who like {self.category}"
        )


@dataclass(frozen=True)
class Hop:
    reason: str
    query: str
    filters: dict[str, str]
    hit_ids: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"reason": self.reason, "query": self.query, "filters": self.filters,
                "hits": self.hit_ids}  # fmt: skip


@dataclass(frozen=True)
class Retrieval:
    exemplars: list[Exemplar]
    hops: list[Hop] = field(default_factory=list)

    def explain(self) -> dict[str, object]:
        return {
            "exemplars": [e.id for e in self.exemplars],
            "hops": [h.as_dict() for h in self.hops],
        }


class ExemplarRetriever:
    def __init__(
        self,
        embedder: Embedder,
        store: ExemplarStore,
        *,
        k: int = 8,
        max_hops: int = 3,
        token_budget: int = 700,
        max_exemplars: int = 4,
    ) -> None:
        self._embedder = embedder
        self._store = store
        self._k = k
        self._max_hops = max_hops
        self._token_budget = token_budget
        self._max_exemplars = max_exemplars

    def one_shot(self, query: ClusterQuery, limit: int | None = None) -> list[Exemplar]:
        """The baseline: nearest neighbours of the description, nothing else."""
        vector = self._embedder.encode([query.describe()])[0]
        hits = self._store.search(query.tenant_id, vector, limit=limit or self._k)
        return [h.exemplar for h in hits]

    def retrieve(self, query: ClusterQuery) -> Retrieval:
        base = query.describe()
        first = self._store.search(query.tenant_id, self._embedder.encode([base])[0], limit=self._k)
        hops = [Hop("describe the readers and the goal", base, {}, [h.exemplar.id for h in first])]
        found: dict[str, Hit] = {h.exemplar.id: h for h in first}
        asked: set[str] = set()
        # Re-read the evidence after every hop: a hop that fixes one gap may reveal another.
        while len(hops) <= self._max_hops:
            gaps = [g for g in self._gaps(query, list(found.values())) if g[0] not in asked]
            if not gaps:
                break
            key, reason, text, filters = gaps[0]
            asked.add(key)
            hits = self._store.search(
                query.tenant_id, self._embedder.encode([text])[0], limit=self._k, **filters
            )
            hops.append(Hop(reason, text, dict(filters), [h.exemplar.id for h in hits]))
            for hit in hits:
                if hit.exemplar.id not in found or found[hit.exemplar.id].score < hit.score:
                    found[hit.exemplar.id] = hit
        return Retrieval(self._rank_and_trim(query, list(found.values())), hops)

    def _gaps(
        self, query: ClusterQuery, hits: list[Hit]
    ) -> list[tuple[str, str, str, dict[str, str]]]:
        """What the evidence so far is missing, as follow-up queries, most important first:
        (gap key, reason, query text, filters)."""
        base = query.describe()
        gaps: list[tuple[str, str, str, dict[str, str]]] = []
        goal_hits = [h for h in hits if h.exemplar.goal == query.goal]
        if len(goal_hits) < 2:
            gaps.append(("goal", f"goal fit: {len(goal_hits)} of {len(hits)} written for "
                         f"{query.goal}", base, {"goal": query.goal}))  # fmt: skip
        fit = [h for h in goal_hits if h.exemplar.category == query.category]
        if len(fit) < 2:
            gaps.append(("category", f"category fit: {len(fit)} {query.goal} exemplars about "
                         f"{query.category}", base,
                         {"goal": query.goal, "category": query.category}))  # fmt: skip
        angles = {h.exemplar.angle for h in goal_hits}
        for angle in NEEDED_ANGLES.get(query.goal, ()):
            if angle not in angles:
                gaps.append((f"angle:{angle}",
                             f"persuasion: no {angle.replace('_', ' ')} for {query.goal}",
                             f"{base}; {ANGLE_WORDS[angle]}",
                             {"goal": query.goal, "angle": angle}))  # fmt: skip
        if query.tone == "formal" and not any(h.exemplar.tone == "formal" for h in goal_hits):
            gaps.append(("tone", "tone: no formal exemplar for a formal brand", base,
                         {"goal": query.goal, "tone": "formal"}))  # fmt: skip
        return gaps

    def _rank_and_trim(self, query: ClusterQuery, hits: list[Hit]) -> list[Exemplar]:
        def rank(hit: Hit) -> float:
            e = hit.exemplar
            fit = 0.15 * (e.goal == query.goal) + 0.1 * (e.category == query.category)
            fit += 0.05 * (e.tone == query.tone) + 0.05 * (e.angle in NEEDED_ANGLES.get(e.goal, ()))
            return hit.score + fit + e.click_rate

        chosen: list[Exemplar] = []
        used = 0
        for hit in sorted(hits, key=rank, reverse=True):
            tokens = len(hit.exemplar.text()) // 4 + 1
            if used + tokens > self._token_budget:
                continue
            chosen.append(hit.exemplar)
            used += tokens
            if len(chosen) >= self._max_exemplars:
                break
        return chosen
