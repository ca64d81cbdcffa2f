"""What a verdict does: the winner rolls out to the rest of the audience, and its email joins
the tenant's exemplar corpus (PII redacted) so retrieval can offer it to later campaigns."""

from __future__ import annotations

import asyncio
import logging

from rag.corpus import Exemplar
from rag.index import ExemplarIndex
from tailor.ab_tests.looks import load_test
from tailor.db import Database
from tailor.errors import NotFound
from tailor.models import AbTestStatus, CampaignKind, Generator
from tailor.payloads import AbRollout
from tailor.personalise.pii import PiiScanner
from tailor.store.ab_tests import cell_slices, set_ab_status, variant_counts
from tailor.store.campaigns import create_campaign
from tailor.store.templates import get_version

log = logging.getLogger(__name__)


async def roll_out(db: Database, rollout: AbRollout) -> str:
    """Record the verdict and create the rollout campaign (once: a retry finds it)."""
    test = await load_test(db, rollout.test_id)
    if test.rollout_campaign_id is not None:
        return test.rollout_campaign_id
    verdict = rollout.verdict
    variant = next((v for v in test.variants if v["key"] == verdict.winner), None)
    if variant is None:
        raise NotFound("A/B test variant", f"{verdict.winner!r} of {test.id}")
    _, rest = cell_slices(test.id, len(test.variants), test.test_fraction)
    async with db.session() as session:
        campaign = await create_campaign(
            session=session,
            tenant_id=test.tenant_id,
            name=f"{test.name} · rollout of variant {verdict.winner}",
            template_version_id=variant["template_version_id"],
            segment={**test.segment, "sample": rest},
            kind=CampaignKind.AB_CELL,
            # The plain variant won an AI vs plain test: the rest get the plain email too.
            generator=Generator(variant.get("generator", Generator.AUTO)),
        )
        await session.flush()
        conn = await session.connection()
        await set_ab_status(
            conn,
            test_id=test.id,
            status=AbTestStatus.ROLLING_OUT,
            winner=verdict.winner,
            decision={"how": verdict.how, "reason": verdict.reason,
                      "probabilities": verdict.probabilities},
            rollout_campaign_id=campaign.id,
        )  # fmt: skip
        return campaign.id


async def add_to_corpus(
    db: Database, index: ExemplarIndex, pii: PiiScanner, test_id: str
) -> str | None:
    """The winning email, with the rate it earned, as one of the tenant's exemplars."""
    test = await load_test(db, test_id)
    variant = next((v for v in test.variants if v["key"] == test.winner), None)
    if variant is None:
        return None
    async with db.read_session() as session:
        _, version = await get_version(
            session=session, tenant_id=test.tenant_id, version_id=variant["template_version_id"]
        )
    async with db.read() as conn:
        counts = {c.key: c for c in await variant_counts(conn, test=test)}
    won = counts[variant["key"]]
    rate = won.successes / won.sent if won.sent else 0.0
    texts = {
        key: pii.redact(text)[0]
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
    await asyncio.to_thread(index.add, [exemplar])
    log.info("A/B test %s: winner %s added to the exemplar corpus", test.id, test.winner)
    return exemplar.id


async def finish(db: Database, test_id: str, status: str) -> None:
    async with db.write() as conn:
        await set_ab_status(conn, test_id=test_id, status=AbTestStatus(status))
