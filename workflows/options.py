"""Activity options for every workflow: timeouts, heartbeats and retry policies, in one place.

Every activity runs on its workflow's task queue (``TAILOR_TEMPORAL_TASK_QUEUE``, one queue for
the whole worker), so no option here names one. Non-retryable failure types come from
``activities.errors.ErrorType``, the names the activities raise with.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from activities.errors import NOT_FOUND_TYPES, ErrorType


def _backoff(
    first: timedelta,
    attempts: int,
    longest: timedelta | None = None,
    never_retry: tuple[str, ...] = (),
) -> RetryPolicy:
    """Exponential backoff (doubling from ``first``, capped at ``longest``)."""
    return RetryPolicy(
        initial_interval=first,
        backoff_coefficient=2.0,
        maximum_interval=longest,
        maximum_attempts=attempts,
        non_retryable_error_types=list(never_retry),
    )


# What no retry can fix for a send: the campaign's data is gone, or its template cannot render.
UNSENDABLE = (*NOT_FOUND_TYPES, ErrorType.TEMPLATE_ERROR)

# Short reads and writes of the store. Ten attempts ride out a database restart.
STORE_TIMEOUT = timedelta(seconds=60)
STORE_RETRY = _backoff(timedelta(seconds=1), 10, timedelta(seconds=30), NOT_FOUND_TYPES)
# Journeys run their store calls as local activities, inside the workflow task: kept short.
LOCAL_STORE_TIMEOUT = timedelta(seconds=30)

# Planning a campaign: a template that does not compile fails it at once (TemplateError).
PLAN_RETRY = _backoff(timedelta(seconds=1), 3, never_retry=NOT_FOUND_TYPES)

# A chunk of a campaign (and the release of reviewed sends). Retries ride out an SMTP or
# database outage of about half an hour; sends already accepted are never repeated because each
# retry skips the rows an earlier attempt settled.
CHUNK_TIMEOUT = timedelta(minutes=10)
# A killed worker is noticed within this long, and its chunk retried elsewhere.
CHUNK_HEARTBEAT = timedelta(seconds=15)
CHUNK_RETRY = _backoff(timedelta(seconds=2), 20, timedelta(minutes=2), UNSENDABLE)

# One journey email (a local activity). Rides out an SMTP or database outage of about an hour;
# the send row (one per journey run and email) makes every retry idempotent.
JOURNEY_SEND_TIMEOUT = timedelta(minutes=2)
JOURNEY_SEND_RETRY = _backoff(timedelta(seconds=2), 20, timedelta(minutes=5), UNSENDABLE)
# Writing a journey email ahead is an optimisation: a failure costs only the instant send.
JOURNEY_PREPARE_TIMEOUT = timedelta(minutes=2)
JOURNEY_PREPARE_RETRY = RetryPolicy(maximum_attempts=2)

# Embedding an A/B winner into the exemplar store: useful, never worth failing the test for.
CORPUS_TIMEOUT = timedelta(minutes=2)
CORPUS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=3)

# A page of the daily features job.
FEATURES_PAGE_TIMEOUT = timedelta(minutes=5)
FEATURES_PAGE_RETRY = _backoff(timedelta(seconds=2), 10, timedelta(minutes=1))

# One batch of an endpoint's webhook events: one POST (TAILOR_OUTBOUND_TIMEOUT_S, at most 60 s)
# and two short writes.
OUTBOUND_DELIVER_TIMEOUT = timedelta(seconds=90)
# The retry budget of a batch: 15 attempts, doubling from 5 s to an hour apart, about 5.4 hours
# in all, so a receiver that is down for an afternoon gets everything in order once it is back.
# A Retry-After answer sets the next wait instead. Then the batch becomes dead letters.
OUTBOUND_DELIVER_RETRY = _backoff(
    timedelta(seconds=5), 15, timedelta(hours=1), (ErrorType.WEBHOOK_UNDELIVERABLE,)
)
# How long a workflow with nothing left to send waits for more before it completes (the relay
# starts it again when rows arrive).
OUTBOUND_LINGER = timedelta(minutes=5)

# An erasure's steps retry until the store and Redis answer (maximum_attempts 0: no limit),
# at most every 10 minutes: the person asked, and nothing else finishes it.
ERASURE_RETRY = _backoff(timedelta(seconds=2), 0, timedelta(minutes=10))
