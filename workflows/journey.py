"""JourneyWorkflow: one person's run through one journey (welcome, cart abandonment, ...).

    start (load the definition version, record the run) ──► steps: wait | send ──► finish
                  ▲ event signals: an exit event ends it early; consent revocation stops it

The workflow id is ``journey-{tenant}-{journey}-{contact}`` and triggers use signal-with-start,
so a second trigger while a run is going is a signal to it, not a second journey. Waits end
early when an exit event or a revocation arrives. A send that is over the person's daily limit
waits for their next window and tries again. The email is written while the journey waits
before it (speculatively), so the send is instant when the timer fires.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.journey import JourneyActivities
    from tailor.payloads import (
        JourneyEnd,
        JourneyInput,
        JourneyPlan,
        JourneySend,
        JourneySendResult,
        JourneySignal,
        JourneyStart,
        JourneyState,
        JourneyStepPlan,
        SendTimePlan,
    )
    from workflows import options

# Events remembered for de-duplication; a journey sees a handful, this only bounds a flood.
MAX_SEEN_EVENTS = 500


# Not sandboxed: one run per triggered event makes the sandbox's per-run module re-import the
# largest CPU cost of a journey (measured with py-spy under `tailor bench trigger`). The code
# is plain orchestration (timers, signals, activities), and the committed histories' replay
# test is the determinism check.
@workflow.defn(sandboxed=False)
class JourneyWorkflow:
    def __init__(self) -> None:
        self._exit_on: set[str] | None = None  # None until the definition is loaded
        self._early: list[JourneySignal] = []  # signals that arrived before that
        self._seen: set[int] = set()
        self._exit: str | None = None
        self._stopped = False
        self._retriggers = 0
        self._step = ""

    @workflow.signal
    def event(self, signal: JourneySignal) -> None:
        """One of the person's events (a trigger or anything else); duplicates are ignored."""
        if signal.event_id in self._seen or len(self._seen) >= MAX_SEEN_EVENTS:
            return
        self._seen.add(signal.event_id)
        if self._exit_on is None:
            self._early.append(signal)
        else:
            self._handle(signal)

    @workflow.signal
    def revoke_consent(self) -> None:
        """Consent revoked: stop now; nothing more is sent (the send claim checks it too)."""
        self._stopped = True
        self._exit = self._exit or "consent revoked"

    @workflow.query
    def state(self) -> JourneyState:
        return JourneyState(self._step, self._exit, self._retriggers)

    def _handle(self, signal: JourneySignal) -> None:
        assert self._exit_on is not None
        if signal.name in self._exit_on and self._exit is None:
            self._exit = f"exit event: {signal.name}"
        elif signal.name not in self._exit_on:
            self._retriggers += 1  # already on this journey: the trigger is absorbed

    @workflow.run
    async def run(self, journey: JourneyInput) -> JourneyEnd:
        info = workflow.info()
        self._seen.add(journey.trigger_event_id)
        # Local activities: short store calls, run inside the workflow task (no extra round
        # trip to the server before a zero-delay journey's send).
        plan: JourneyPlan = await workflow.execute_local_activity_method(
            JourneyActivities.start_journey,
            JourneyStart(journey, info.run_id, info.workflow_id),
            start_to_close_timeout=options.LOCAL_STORE_TIMEOUT,
            retry_policy=options.STORE_RETRY,
            summary=f"start {journey.journey_key}",
        )
        self._exit_on = set(plan.exit_on)
        for signal in self._early:
            if signal.event_id != journey.trigger_event_id:  # the start signal is the trigger
                self._handle(signal)
        if not plan.consented:
            self._stopped, self._exit = True, "no consent"
        sent = 0
        for index, step in enumerate(plan.steps):
            if self._exit is not None:
                break
            self._step = step.name or f"wait {step.minutes} min"
            if step.kind == "wait":
                await self._wait_step(journey, info.run_id, step, plan.steps[index + 1 :])
                continue
            result = await self._send(journey, info.run_id, step)
            if result is not None and result.outcome == "sent":
                sent += 1
            elif result is not None and result.outcome == "suppressed":
                self._stopped, self._exit = True, self._exit or "no consent"
        status = "stopped" if self._stopped else ("exited" if self._exit else "completed")
        end = JourneyEnd(info.run_id, status, self._exit or "all steps done", sent)
        await workflow.execute_local_activity_method(
            JourneyActivities.finish_journey,
            end,
            start_to_close_timeout=options.LOCAL_STORE_TIMEOUT,
            retry_policy=options.STORE_RETRY,
            summary=f"finish: {status}",
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return end

    async def _wait(self, duration: timedelta) -> None:
        """Sleep, unless an exit event or a revocation ends the journey first."""
        if duration <= timedelta(0):
            return
        try:
            await workflow.wait_condition(lambda: self._exit is not None, timeout=duration)
        except TimeoutError:
            pass

    async def _wait_step(
        self,
        journey: JourneyInput,
        run_id: str,
        step: JourneyStepPlan,
        rest: list[JourneyStepPlan],
    ) -> None:
        following = rest[0] if rest and rest[0].kind == "send" else None
        prepare = None
        if following is not None and step.minutes > 0:
            prepare = workflow.start_activity_method(
                JourneyActivities.prepare_email,
                self._send_input(journey, run_id, following),
                start_to_close_timeout=options.JOURNEY_PREPARE_TIMEOUT,
                retry_policy=options.JOURNEY_PREPARE_RETRY,
                summary=f"write {following.name} ahead",
            )
        await self._wait(timedelta(minutes=step.minutes))
        if prepare is not None:
            if not prepare.done():
                prepare.cancel()
            try:
                await prepare
            except (ActivityError, asyncio.CancelledError):
                pass  # the send writes it then

    def _send_input(self, journey: JourneyInput, run_id: str, step: JourneyStepPlan) -> JourneySend:
        return JourneySend(
            run_id=run_id,
            tenant_id=journey.tenant_id,
            contact_id=journey.contact_id,
            journey_key=journey.journey_key,
            step=step.name,
            campaign_id=step.campaign_id,
            trigger=journey.trigger,
            send_time=step.send_time,
        )

    async def _send(
        self, journey: JourneyInput, run_id: str, step: JourneyStepPlan
    ) -> JourneySendResult | None:
        request = self._send_input(journey, run_id, step)
        if step.send_time == "best_hour":
            timing: SendTimePlan = await workflow.execute_local_activity_method(
                JourneyActivities.plan_send_time,
                request,
                start_to_close_timeout=options.LOCAL_STORE_TIMEOUT,
                retry_policy=options.STORE_RETRY,
                summary=f"{step.name}: best local hour",
            )
            request = replace(
                request, send_time_reason=f"{timing.local_hour}:00 local ({timing.reason})"
            )
            await self._wait(timedelta(seconds=timing.delay_s))
        while self._exit is None:
            result: JourneySendResult = await workflow.execute_local_activity_method(
                JourneyActivities.send_email,
                request,
                start_to_close_timeout=options.JOURNEY_SEND_TIMEOUT,
                retry_policy=options.JOURNEY_SEND_RETRY,
                summary=f"send {step.name}",
            )
            if result.outcome != "throttled":
                return result
            await self._wait(timedelta(seconds=result.retry_after_s))
        return None
