"""AbTestWorkflow: variant cells, a decision, then the winner rolled out to everyone else.

    cells (one CampaignWorkflow child per variant) ──► window ──► decide ──► rollout child
                                                          │  inconclusive: one more window,
                                                          │  then the default variant
                                   decide_now / choose_winner signals cut the wait short

The decision itself (Bayesian probability to beat all, ``tailor.ab_tests.decision``) runs in an
activity: it reads engagement from the store and draws seeded samples, neither of which belongs
in workflow code. The history holds ids, counts and the verdict only.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ChildWorkflowError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.ab_test import AbTestActivities
    from tailor.payloads import (
        AbLook,
        AbOutcome,
        AbProgress,
        AbRollout,
        AbTestInput,
        AbVerdict,
        CampaignInput,
        CampaignOutcome,
        CampaignRun,
    )
    from workflows import options
    from workflows.campaign import CampaignWorkflow
    from workflows.search_attributes import campaign_search_attributes


@workflow.defn
class AbTestWorkflow:
    def __init__(self) -> None:
        self._progress = AbProgress()
        self._decide_now = False
        self._manual: str | None = None
        self._cancel = False
        self._children: list[ChildWorkflowHandle[CampaignWorkflow, CampaignOutcome]] = []
        self._keys: list[str] = []

    @workflow.run
    async def run(self, test: AbTestInput) -> AbOutcome:
        self._keys = list(test.variant_keys)
        try:
            return await self._run(test)
        except ChildWorkflowError:
            await self._finish(test, "failed")  # the failed campaign records why
            raise

    async def _run(self, test: AbTestInput) -> AbOutcome:
        self._children = [
            await self._start_campaign(test, campaign_id) for campaign_id in test.cell_campaign_ids
        ]
        await self._wait_for_cells()
        verdict = None if self._cancel else await self._decide(test)
        if verdict is None:
            await self._cancel_children()
            return await self._finish(test, "cancelled")
        self._progress.winner = verdict.winner
        self._progress.how = verdict.how
        self._progress.reason = verdict.reason
        rollout_id = await workflow.execute_activity_method(
            AbTestActivities.roll_out_winner,
            AbRollout(test.test_id, verdict),
            start_to_close_timeout=options.STORE_TIMEOUT,
            retry_policy=options.STORE_RETRY,
            summary=f"rollout: variant {verdict.winner} to the rest of the audience",
        )
        self._progress.rollout_campaign_id = rollout_id
        self._progress.status = "rolling_out"
        rollout = await self._start_campaign(test, rollout_id)
        self._children.append(rollout)
        await workflow.wait_condition(lambda: rollout.done() or self._cancel)
        if self._cancel:
            await self._cancel_children()
            await workflow.wait_condition(rollout.done)
        if rollout.exception() is not None and not self._cancel:
            return await self._finish(test, "failed")  # the campaign records why
        try:
            await workflow.execute_activity_method(
                AbTestActivities.add_winner_to_corpus,
                test.test_id,
                start_to_close_timeout=options.CORPUS_TIMEOUT,
                retry_policy=options.CORPUS_RETRY,
                summary="rag: add the winning email to the exemplar corpus",
            )
        except ActivityError:
            workflow.logger.warning("winner not added to the exemplar corpus")
        return await self._finish(test, "cancelled" if self._cancel else "completed")

    async def _start_campaign(
        self, test: AbTestInput, campaign_id: str
    ) -> ChildWorkflowHandle[CampaignWorkflow, CampaignOutcome]:
        return await workflow.start_child_workflow(
            CampaignWorkflow.run,
            CampaignRun(CampaignInput(campaign_id, test.tenant_id)),
            id=f"campaign-{campaign_id}",
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            search_attributes=(
                campaign_search_attributes(test.tenant_id, campaign_id)
                if test.tag_search_attributes
                else None
            ),
            static_summary=f"A/B test {test.test_id}: campaign {campaign_id}",
        )

    async def _wait_for_cells(self) -> None:
        """Until every cell has sent (or the test is cancelled); a failed cell fails the test."""
        cells = list(self._children)
        await workflow.wait_condition(lambda: all(c.done() for c in cells) or self._cancel)
        self._progress.cells_done = sum(1 for c in cells if c.done())
        for cell in cells:
            if cell.done() and cell.exception() is not None and not self._cancel:
                raise cell.exception()  # type: ignore[misc]

    async def _decide(self, test: AbTestInput) -> AbVerdict | None:
        """The winner: chosen by hand, decided after the window (and one extension), or the
        default when the data never decides. None: cancelled."""
        for look in (1, 2):
            self._progress.status = "waiting" if look == 1 else "extended"
            ends = workflow.now() + timedelta(seconds=test.window_s)
            self._progress.window_ends_at = ends.isoformat()
            try:
                await workflow.wait_condition(
                    lambda: self._decide_now or self._manual is not None or self._cancel,
                    timeout=timedelta(seconds=test.window_s),
                    timeout_summary=f"A/B window {look}: collecting engagement",
                )
            except TimeoutError:
                pass
            if self._cancel:
                return None
            if self._manual is not None:
                return AbVerdict(self._manual, True, "chosen by hand", how="manual")
            verdict = await workflow.execute_activity_method(
                AbTestActivities.evaluate,
                AbLook(test.test_id, look, final=look == 2 or self._decide_now),
                start_to_close_timeout=options.STORE_TIMEOUT,
                retry_policy=options.STORE_RETRY,
                summary=f"decide: look {look}",
            )
            if verdict.conclusive or verdict.how == "default":
                return verdict
        raise AssertionError("the second look always decides")

    async def _cancel_children(self) -> None:
        for child in self._children:
            if not child.done():
                await child.signal(CampaignWorkflow.cancel)

    async def _finish(self, test: AbTestInput, status: str) -> AbOutcome:
        await workflow.execute_activity_method(
            AbTestActivities.finish,
            args=[test.test_id, status],
            start_to_close_timeout=options.STORE_TIMEOUT,
            retry_policy=options.STORE_RETRY,
            summary=f"finish: mark the test {status}",
        )
        self._progress.status = status
        return AbOutcome(status, self._progress.winner, self._progress.rollout_campaign_id)

    @workflow.query
    def progress(self) -> AbProgress:
        return self._progress

    @workflow.signal
    def decide_now(self) -> None:
        """Stop the window early: decide on the data so far (the default if inconclusive)."""
        self._decide_now = True

    @workflow.signal
    def choose_winner(self, variant: str) -> None:
        """A person picks the winner; the rollout starts right away (before the decision)."""
        if variant in self._keys and self._progress.winner is None:
            self._manual = variant

    @workflow.signal
    def cancel(self) -> None:
        self._cancel = True
