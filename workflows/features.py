"""DailyFeaturesWorkflow: the features that need history, once a day (a Temporal Schedule).

    derive (pages of contacts) ──► emit lapse and milestone events (pages) ──► done

Each page is one activity over at most ``page_size`` contacts (ids only cross Temporal); the
run continues as new when its history grows long, carrying the cursor.
"""

from __future__ import annotations

from dataclasses import replace

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.features import FeatureActivities
    from tailor.payloads import FeaturesOutcome, FeaturesPage, FeaturesPageResult, FeaturesRun
    from workflows import options

SCHEDULE_ID = "tailor-daily-features"


@workflow.defn
class DailyFeaturesWorkflow:
    @workflow.run
    async def run(self, run: FeaturesRun) -> FeaturesOutcome:
        while True:
            step = (
                FeatureActivities.derive_page
                if run.phase == "derive"
                else FeatureActivities.emit_daily_events
            )
            page: FeaturesPageResult = await workflow.execute_activity_method(
                step,
                FeaturesPage(run.after_contact_id, run.page_size),
                start_to_close_timeout=options.FEATURES_PAGE_TIMEOUT,
                retry_policy=options.FEATURES_PAGE_RETRY,
                summary=f"{run.phase} after contact {run.after_contact_id}",
            )
            if run.phase == "derive":
                run = replace(run, updated=run.updated + page.count)
            else:
                run = replace(run, emitted=run.emitted + page.count)
            if page.next_after is not None:
                run = replace(run, after_contact_id=page.next_after)
            elif run.phase == "derive":
                run = replace(run, phase="emit", after_contact_id=0)
            else:
                return FeaturesOutcome(run.updated, run.emitted)
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(run)
