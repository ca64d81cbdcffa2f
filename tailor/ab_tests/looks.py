"""A look at an A/B test: the decision rule on the engagement so far, as a verdict."""

from __future__ import annotations

from tailor.ab_tests.decision import DecisionRule, VariantStats, decide, seed_for
from tailor.db import Database
from tailor.models import AbTest
from tailor.payloads import AbLook, AbVerdict
from tailor.store.ab_tests import get_ab_test, variant_counts


async def load_test(db: Database, test_id: str) -> AbTest:
    async with db.read_session() as session:
        return await get_ab_test(session=session, test_id=test_id)


async def evaluate(db: Database, look: AbLook) -> AbVerdict:
    """The seed comes from the test and the look, so a retried attempt decides exactly as the
    first one would have. At the final look an inconclusive test sends its default variant."""
    test = await load_test(db, look.test_id)
    async with db.read() as conn:
        counts = await variant_counts(conn, test=test)
    stats = [VariantStats(c.key, c.sent, c.successes) for c in counts]
    rule = DecisionRule(threshold=test.threshold, min_sent_per_variant=test.min_sent_per_variant)
    decision = decide(stats, rule, seed_for(f"{test.id}:{look.look}"))
    figures = ", ".join(f"{c.key} {c.successes}/{c.sent}" for c in counts)
    if decision.conclusive:
        return AbVerdict(decision.winner, True, f"{decision.reason} ({test.metric}: {figures})",
                         decision.probabilities)  # fmt: skip
    if not look.final:
        return AbVerdict(None, False, decision.reason, decision.probabilities)
    return AbVerdict(
        test.default_variant,
        False,
        f"inconclusive ({decision.reason}; {test.metric}: {figures}): "
        f"the default variant {test.default_variant} goes out",
        decision.probabilities,
        how="default",
    )
