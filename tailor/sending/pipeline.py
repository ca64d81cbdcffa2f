"""The send pipeline: one attempt at a set of sends, from their rows to delivered, explained emails.

    send rows ─► reconcile unclear ─► consent screen ─► hold out the control group
      ─► recipients and profiles
      ─► personalise (clusters, exemplars, LLM tiers, evaluator; rules tier otherwise)
      ─► hold for review ─► compose (guardrail, footer, unsubscribe)
      ─► claim and deliver (consent checked again, providers in failover order)
      ─► explain and record

Campaign chunks, released reviews and journey emails all go through it. Every step is
idempotent on the send rows (one per campaign, contact and occurrence), so a retried attempt
skips whatever an earlier one settled, and nobody gets an email twice.

A campaign's control group (``tailor/holdout.py``) is fixed on the send rows as they are made
(``control``). After the consent screen (a person without consent is suppressed, not held out),
members of a control group that is not mailed become ``held_out``; members of a "plain" control
group, like every recipient of a rules-only campaign, get the rules tier's email: no LLM call is
made for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from tailor.db import Database
from tailor.delivery.dispatch import Dispatcher, DispatchReport, Envelope
from tailor.delivery.smtp import DeliveryUnavailable
from tailor.models import HoldoutTreatment, utcnow
from tailor.observability.metrics import CONSENT, EMAILS, NONE
from tailor.observability.tracing import note, step
from tailor.personalise.context import CampaignContext
from tailor.personalise.exemplars import ClusterExemplars, ClusterRetrievals
from tailor.personalise.generation import Cluster, ClusterContent, ClusterGenerator, clusters_of
from tailor.personalise.rules import Personalised
from tailor.profiles.loader import ProfileLoader
from tailor.sending.compose import Composer
from tailor.sending.consent import screen
from tailor.sending.errors import AwaitingReconciliation, ProfilesUnavailable, SendsDeferred
from tailor.sending.explain import why_this_email
from tailor.sending.outcomes import Outcomes
from tailor.sending.recipients import Recipient, load_recipients
from tailor.store.reviews import hold, release_decided, released_sends
from tailor.store.sends import Accepted, SendRow, ensure_send_rows, hold_out

# Called with progress while an attempt runs: the activity's heartbeat.
Heartbeat = Callable[..., None]
HEARTBEAT_EVERY_S = 5.0


def _quiet(*_: object) -> None:
    return None


@dataclass(frozen=True)
class SendPipeline:
    db: Database
    dispatcher: Dispatcher
    generator: ClusterGenerator
    profiles: ProfileLoader
    exemplars: ClusterExemplars
    composer: Composer
    steps: list[str]  # the plan every send follows, for "why this email"

    async def deliver(
        self,
        ctx: CampaignContext,
        contact_ids: list[int],
        revoked_contact_ids: Sequence[int],
        *,
        occurrence: str = "",
        review: bool = True,
        heartbeat: Heartbeat = _quiet,
    ) -> int:
        """Send ``ctx``'s email to these contacts (one occurrence of it); returns how many of
        their sends were already settled. ``review=False`` (journeys, which cannot wait for a
        person) sends the rules-tier email where LLM content awaits review."""
        async with self.db.write() as conn:
            await ensure_send_rows(conn, campaign_id=ctx.campaign_id, contact_ids=contact_ids,
                                   domain=ctx.sender_domain, occurrence=occurrence,
                                   control=ctx.holdout.controls(contact_ids))  # fmt: skip
        async with _beating(heartbeat):  # a provider's activity API can be slow (rate limits)
            unclear, unclear_wait_s = await self.dispatcher.reconcile(
                ctx.campaign_id, contact_ids, occurrence
            )
        screened = await screen(self.db, campaign_id=ctx.campaign_id, contact_ids=contact_ids,
                                revoked_contact_ids=revoked_contact_ids,
                                occurrence=occurrence)  # fmt: skip
        tenant = ctx.tenant.id
        CONSENT.labels(tenant, "granted").inc(len(screened.pending))
        if screened.suppressed:
            CONSENT.labels(tenant, "rejected").inc(screened.suppressed)
            EMAILS.labels(tenant, NONE, NONE, "suppressed").inc(screened.suppressed)
        pending = await self._hold_out(ctx, screened.pending)
        recipients, waiting = await load_recipients(self.profiles, pending)
        now = utcnow()
        with step("personalise", tenant=ctx.tenant.id, campaign=ctx.campaign_id,
                  recipients=len(recipients), suppressed=screened.suppressed) as span:  # fmt: skip
            async with _beating(heartbeat):  # retrieval and LLM calls can outlast the heartbeat
                retrievals = await self._retrieve(ctx, recipients, now)
                for_the_llm = _for_the_llm(ctx, recipients, retrievals)
                written = await self.generator.for_contacts(
                    ctx, for_the_llm, now, retrievals.by_cluster
                )
            if span.is_recording():  # counted only for a trace: this is the send path
                by_llm = sum(1 for c in written.values() if c.usable)
                held = sum(1 for c in written.values() if c.held)
                note(span, clusters=len(set(retrievals.clusters.values())), by_llm=by_llm,
                     held=held, by_rules=len(recipients) - by_llm - held)  # fmt: skip
        if review:
            recipients = await self._hold_for_review(recipients, written)
        await self._send(ctx, recipients, written, retrievals, heartbeat)
        if waiting:
            raise ProfilesUnavailable(waiting)
        if unclear:
            raise AwaitingReconciliation(unclear, unclear_wait_s)
        return screened.settled

    async def release_reviewed(
        self,
        ctx: CampaignContext,
        revoked_contact_ids: Sequence[int],
        *,
        batch_size: int,
        heartbeat: Heartbeat = _quiet,
    ) -> None:
        """Deliver the held sends whose review is decided: the approved content, or the
        rules-tier email if it was rejected or expired."""
        async with self.db.write() as conn:
            await release_decided(conn, campaign_id=ctx.campaign_id)
        while True:
            async with self.db.read() as conn:
                released = await released_sends(conn, campaign_id=ctx.campaign_id, limit=batch_size)
            if not released:
                return
            screened = await screen(self.db, campaign_id=ctx.campaign_id,
                                    contact_ids=list(released),
                                    revoked_contact_ids=revoked_contact_ids)  # fmt: skip
            recipients, waiting = await load_recipients(self.profiles, screened.pending)
            by_review = await self.generator.from_reviews(set(released.values()))
            written = {
                contact_id: by_review[review_id]
                for contact_id, review_id in released.items()
                if review_id in by_review
            }
            async with _beating(heartbeat):
                retrievals = await self._retrieve(ctx, recipients, utcnow())
            await self._send(ctx, recipients, written, retrievals, heartbeat)
            if waiting:
                raise ProfilesUnavailable(waiting)

    async def _hold_out(self, ctx: CampaignContext, pending: list[SendRow]) -> list[SendRow]:
        """Mark the consenting members of a control group that is not mailed ``held_out``;
        the rest go on. Only pending rows are here, so a retry leaves settled ones alone."""
        if ctx.holdout.treatment != HoldoutTreatment.NONE:
            return pending
        withheld = [s.id for s in pending if s.control]
        if not withheld:
            return pending
        why = {"holdout": ctx.holdout.explain(control=True), **(ctx.explain_extra or {})}
        async with self.db.write() as conn:
            # The moved ids are what a held-out counter should add (each once, across retries).
            await hold_out(conn, send_ids=withheld, why=why)
        EMAILS.labels(ctx.tenant.id, NONE, NONE, "held_out").inc(len(withheld))
        return [s for s in pending if not s.control]

    async def _retrieve(
        self, ctx: CampaignContext, recipients: list[Recipient], now: datetime
    ) -> ClusterRetrievals:
        """Each recipient's cluster, and one retrieval per cluster (cached per worker)."""
        clusters = clusters_of((r.contact for r in recipients), ctx.catalog, now)
        by_cluster = await self.exemplars.for_clusters(ctx, set(clusters.values()))
        return ClusterRetrievals(clusters, by_cluster)

    async def _hold_for_review(
        self, recipients: list[Recipient], written: dict[int, ClusterContent]
    ) -> list[Recipient]:
        """Hold the sends whose content awaits review; the rest go ahead."""
        held: dict[int, list[int]] = {}
        ready: list[Recipient] = []
        for recipient in recipients:
            content = written.get(recipient.contact_id)
            if content is not None and content.review is not None and content.held:
                held.setdefault(content.review.id, []).append(recipient.send_id)
            else:
                ready.append(recipient)
        if held:
            async with self.db.write() as conn:
                for review_id, send_ids in held.items():
                    await hold(conn, send_ids=send_ids, review_id=review_id)
        return ready

    async def _send(
        self,
        ctx: CampaignContext,
        recipients: list[Recipient],
        written: dict[int, ClusterContent],
        retrievals: ClusterRetrievals,
        heartbeat: Heartbeat,
    ) -> None:
        outcomes = Outcomes(self.db, ctx.tenant.id)
        try:
            await self._compose_and_dispatch(
                ctx, recipients, written, retrievals, outcomes, heartbeat
            )
        finally:  # what was settled is recorded before any failure goes up
            await outcomes.record()
        if outcomes.deferred:
            raise SendsDeferred(len(outcomes.deferred))

    async def _compose_and_dispatch(
        self,
        ctx: CampaignContext,
        recipients: list[Recipient],
        written: dict[int, ClusterContent],
        retrievals: ClusterRetrievals,
        outcomes: Outcomes,
        heartbeat: Heartbeat,
    ) -> None:
        now = utcnow()
        envelopes: list[Envelope] = []
        composed: dict[int, tuple[Recipient, Personalised]] = {}
        with step("guard", emails=len(recipients)) as span:  # guardrail, footer, headers
            for recipient in recipients:
                contact_id = recipient.contact_id
                result = self.composer.compose(
                    ctx, recipient, written.get(contact_id), retrievals.of(contact_id), now
                )
                if isinstance(result, str):
                    outcomes.invalid.append((recipient.send_id, result))
                    continue
                envelopes.append(result.envelope)
                composed[recipient.send_id] = (recipient, result.content)
            note(span, composed=len(envelopes), invalid=len(recipients) - len(envelopes))

        async def checkpoint(report: DispatchReport) -> None:
            accepted, report.accepted = report.accepted, []
            for envelope, provider_message_id, provider in accepted:
                recipient, content = composed[envelope.send_id]
                words = written.get(recipient.contact_id)
                why = why_this_email(
                    ctx, self.steps, content, words, retrievals.of(recipient.contact_id),
                    profile=recipient.profile, provider=provider, now=now,
                    tracked=envelope.links is not None, control=recipient.control,
                )  # fmt: skip
                generator = words.provider if words is not None and words.usable else "rules"
                outcomes.accepted.append(
                    Accepted(envelope.send_id, provider_message_id, generator, why)
                )
                EMAILS.labels(ctx.tenant.id, provider, generator, "sent").inc()
            await outcomes.flush_accepted()

        report = await self.dispatcher.dispatch(
            tenant_id=ctx.tenant.id,
            providers=ctx.tenant.providers,
            rate_per_s=ctx.tenant.send_rate_per_s,
            envelopes=envelopes,
            checkpoint=checkpoint,
            heartbeat=heartbeat,
        )
        await checkpoint(report)
        for envelope, reason, suppress in report.refused:
            outcomes.refused.append((envelope.send_id, reason))
            if suppress:
                outcomes.suppress.append(envelope.contact_id)
        outcomes.not_claimed.extend(envelope.send_id for envelope in report.not_claimed)
        outcomes.deferred.extend(envelope.send_id for envelope in report.left)
        if report.left and report.unavailable:
            raise DeliveryUnavailable(
                f"{len(report.left)} sends found no provider: " + "; ".join(report.unavailable)
            )


def _for_the_llm(
    ctx: CampaignContext, recipients: list[Recipient], retrievals: ClusterRetrievals
) -> dict[int, Cluster]:
    """The recipients the LLM tiers may write for, with their clusters: none in a rules-only
    campaign, and never a member of the control group (it gets the plain email)."""
    if ctx.rules_only:
        return {}
    return {
        r.contact_id: retrievals.clusters[r.contact_id]
        for r in recipients
        if not r.control and r.contact_id in retrievals.clusters
    }


@asynccontextmanager
async def _beating(heartbeat: Heartbeat) -> AsyncIterator[None]:
    """Heartbeat in the background while a step with no natural progress points runs."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
            heartbeat("preparing")

    task = asyncio.ensure_future(beat())
    try:
        yield
    finally:
        task.cancel()
