"""Traces through Temporal: ``temporalio.contrib.opentelemetry`` with a thinner workflow half.

The contrib interceptor carries the trace from the client into workflows and activities, and
its activity and client halves are used as they are. Its workflow half makes, in the workflow
sandbox, a span per workflow run, per signal, per completion and one per activity scheduled, and
encodes a fresh header for each activity. On the trigger path (a journey: one signal, a few
activities) that was most of what tracing cost the worker, for spans an operator learns
nothing from: each is zero-length, and the activity's own span (``RunActivity:``, on the
worker, with its real duration) follows it. So here a run has one workflow span
(``RunWorkflow:<type>``), signals keep theirs (an API call that signals a running campaign is
worth seeing in its trace), a failed run keeps its ``CompleteWorkflow:`` span with the failure,
and each activity is started with the run span's header, encoded once per run.

A workflow replayed into a worker's cache makes no spans (as in temporalio); activities it
starts afterwards hang under the trace's client span instead, from the start header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import opentelemetry.trace
import temporalio.workflow
from temporalio.api.common.v1 import Payload
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
from temporalio.contrib.opentelemetry._interceptor import _TracingWorkflowOutboundInterceptor
from temporalio.worker import (
    ExecuteWorkflowInput,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)


class _Headers:
    """Where ``_completed_span`` writes the header carrying the span it made."""

    def __init__(self) -> None:
        self.headers: Mapping[str, Payload] = {}


class RunSpanWorkflowInterceptor(TracingWorkflowInboundInterceptor):
    """The workflow half (see the module's docstring)."""

    def __init__(self, next: WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        self.activity_header: Payload | None = None

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        WorkflowInboundInterceptor.init(self, _ActivitiesUnderTheRun(outbound, self))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        run = _Headers()
        with self._top_level_workflow_context(success_is_complete=False):
            self._completed_span(
                f"RunWorkflow:{temporalio.workflow.info().workflow_type}",
                add_to_outbound=run,
                kind=opentelemetry.trace.SpanKind.SERVER,
            )
            self.activity_header = run.headers.get(self.header_key) or (
                temporalio.workflow.info().headers.get(self.header_key)
            )
            return await WorkflowInboundInterceptor.execute_workflow(self, input)

    def with_trace(self, headers: Mapping[str, Payload]) -> Mapping[str, Payload]:
        if self.activity_header is None:
            return headers
        return {**headers, self.header_key: self.activity_header}


class _ActivitiesUnderTheRun(_TracingWorkflowOutboundInterceptor):
    """Child workflows, signals out and continue-as-new as temporalio traces them; activities
    started under the run's span, with no span of their own in the workflow."""

    root: RunSpanWorkflowInterceptor

    def start_activity(self, input: StartActivityInput) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = self.root.with_trace(input.headers)
        return self.next.start_activity(input)

    def start_local_activity(
        self, input: StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = self.root.with_trace(input.headers)
        return self.next.start_local_activity(input)


class WorkflowTracing(TracingInterceptor):
    """``TracingInterceptor`` with ``RunSpanWorkflowInterceptor`` as its workflow half."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)  # registers the span-making extern function
        return RunSpanWorkflowInterceptor
