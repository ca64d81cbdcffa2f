"""The A/B test's activities: decide from engagement, start the rollout, keep the winner."""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from rag.corpus import Exemplar
from rag.index import ExemplarIndex
from tailor.ab_tests.decision import DecisionRule, VariantStats, decide, seed_for
from tailor.db import Database
from tailor.errors import NotFound
from tailor.models import AbTest, AbTestStatus, CampaignKind
from tailor.payloads import AbLook, AbRollout, AbVerdict
from tailor.personalise.pii import PiiScanner
from tailor.store.ab_tests import cell_slices, get_ab_test, set_ab_status, variant_counts
from tailor.store.campaigns import create_campaign
from tailor.store.templates import get_version

log = logging.getLogger(__name__)


class AbTestActivities:
    def __init__(self, db: Database, index: ExemplarIndex | None, pii: PiiScanner) -> None:
        self._db = db
        self._index = index
        self._pii = pii

    async def _test(self, test_id: str) -> AbTest:
        try:
            async with self._db.read_session() as session:
                return await get_ab_test(session=session, test_id=test_id)
        except NotFound as exc:
            raise ApplicationError(str(exc), type="AbTestNotFound", non_retryable=True) from exc

    @activity.defn
    async def evaluate(self, look: AbLook) -> AbVerdict:
        """The decision rule on the engagement so far. The seed comes from the test and the
        look, so a retried attempt decides exactly as the first one would have."""
        test = await self._test(look.test_id)
        async with self._db.read() as conn:
            counts = await variant_counts(conn, test)
        stats = [VariantStats(c.key, c.sent, c.successes) for c in counts]
        rule = DecisionRule(
            threshold=test.threshold, min_sent_per_variant=test.min_sent_per_variant
        )
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

    @activity.defn
    async def roll_out_winner(self, rollout: AbRollout) -> str:
        """Record the verdict and create the rollout campaign (once: a retry finds it)."""
        test = await self._test(rollout.test_id)
        if test.rollout_campaign_id is not None:
            return test.rollout_campaign_id
        verdict = rollout.verdict
        variant = next((v for v in test.variants if v["key"] == verdict.winner), None)
        if variant is None:
            raise ApplicationError(
                f"variant {verdict.winner!r} is not in test {test.id}",
                type="AbTestNotFound",
                non_retryable=True,
            )
        _, rest = cell_slices(test.id, len(test.variants), test.test_fraction)
        async with self._db.session() as session:
            campaign = await create_campaign(
                session=session,
                tenant_id=test.tenant_id,
                name=f"{test.name} · rollout of variant {verdict.winner}",
                template_version_id=variant["template_version_id"],
                segment={**test.segment, "sample": rest},
                kind=CampaignKind.AB_CELL,
            )
            await session.flush()
            conn = await session.connection()
            await set_ab_status(
                conn,
                test.id,
                AbTestStatus.ROLLING_OUT,
                winner=verdict.winner,
                decision={
                    "how": verdict.how,
                    "reason": verdict.reason,
                    "probabilities": verdict.probabilities,
                },
                rollout_campaign_id=campaign.id,
            )
            return campaign.id

    @activity.defn
    async def add_winner_to_corpus(self, test_id: str) -> str | None:
        """The winning email joins the tenant's exemplars (PII redacted first), with the
        rate it earned, so retrieval can offer it to later campaigns."""
        if self._index is None:
            return None
        test = await self._test(test_id)
        variant = next((v for v in test.variants if v["key"] == test.winner), None)
        if variant is None:
            return None
        async with self._db.read_session() as session:
            _, version = await get_version(
                session=session, tenant_id=test.tenant_id, version_id=variant["template_version_id"]
            )
        async with self._db.read() as conn:
            counts = {c.key: c for c in await variant_counts(conn, test)}
        won = counts[variant["key"]]
        rate = won.successes / won.sent if won.sent else 0.0
        texts = {
            key: self._pii.redact(text)[0]
            for key, text in (("subject", version.subject), ("preheader", version.preheader),
                              ("body", version.body), ("cta", version.cta_text))
        }  # fmt: skip
        exemplar = Exemplar(
            id=f"ab-{test.id}-{variant['key']}",
            tenant_id=test.tenant_id,
            category="general",
            goal="promo",
            tone="friendly",
            angle="ab-winner",
            language="en",
            subject=texts["subject"],
            preheader=texts["preheader"],
            body=texts["body"],
            cta=texts["cta"],
            open_rate=rate if test.metric == "open" else 0.0,
            click_rate=rate if test.metric != "open" else 0.0,
            source="ab-winner",
        )
        index = self._index
        await asyncio.to_thread(index.add, [exemplar])
        log.info("A/B test %s: winner %s added to the exemplar corpus", test.id, test.winner)
        return exemplar.id

    @activity.defn
    async def finish(self, test_id: str, status: str) -> None:
        async with self._db.write() as conn:
            await set_ab_status(conn, test_id, AbTestStatus(status))
