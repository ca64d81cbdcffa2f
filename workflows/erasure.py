"""ErasureWorkflow: one person erased, durably (GDPR Art. 17).

    erase records ──► forget cached profiles ──► finish (status, counts)

Started by ``DELETE /v1/contacts/{id}`` once sending to the person has stopped; one per contact
(``erasure-<tenant>-<contact>``), so asking again joins the same erasure. Each activity can run
again without harm, and retries until the store and Redis answer.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.erasure import ErasureActivities
    from tailor.payloads import ErasureInput, ErasureOutcome
    from workflows import options


def erasure_workflow_id(tenant_id: str, contact_id: int) -> str:
    return f"erasure-{tenant_id}-{contact_id}"


@workflow.defn
class ErasureWorkflow:
    @workflow.run
    async def run(self, request: ErasureInput) -> ErasureOutcome:
        erased: ErasureOutcome = await workflow.execute_activity_method(
            ErasureActivities.erase_records,
            request,
            start_to_close_timeout=options.STORE_TIMEOUT,
            retry_policy=options.ERASURE_RETRY,
            summary=f"erase contact {request.contact_id}'s records",
        )
        forgotten: ErasureOutcome = await workflow.execute_activity_method(
            ErasureActivities.forget_cached,
            request,
            start_to_close_timeout=options.STORE_TIMEOUT,
            retry_policy=options.ERASURE_RETRY,
            summary="forget cached profiles",
        )
        outcome = ErasureOutcome({**erased.counts, **forgotten.counts})
        await workflow.execute_activity_method(
            ErasureActivities.finish_erasure,
            args=[request, outcome],
            start_to_close_timeout=options.STORE_TIMEOUT,
            retry_policy=options.ERASURE_RETRY,
            summary="record the erasure as done",
        )
        return outcome
