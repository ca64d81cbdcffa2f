"""Everything that crosses Temporal: workflow inputs, activity inputs and outputs, signals.

Ids and counters only. Contact data, email addresses and rendered content never appear here,
because Temporal stores every payload in the workflow history.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CampaignInput:
    campaign_id: str
    tenant_id: str
    start_at: str | None = None  # ISO 8601 UTC: a scheduled start; None: now


@dataclass
class CampaignProgress:
    """Running totals; also the state carried across continue-as-new."""

    status: str = "running"
    total: int = 0
    processed: int = 0
    sent: int = 0
    suppressed: int = 0
    failed: int = 0
    chunks_done: int = 0
    cursor: int = 0  # last contact id whose chunk is scheduled
    paused: bool = False
    revoked_contact_ids: list[int] = field(default_factory=list)
    held: int = 0  # sends waiting for a person to review their content
    open_reviews: int = 0
    held_out: int = 0  # a control group's members, not mailed: processed, like the suppressed
    # Send-time optimisation: the hourly pass over the segment (0-23, then 24: the sweep) and
    # the UTC hour it is for (ISO 8601).
    hour_round: int = 0
    round_at: str | None = None


@dataclass(frozen=True)
class CampaignRun:
    """Input of one run of the campaign workflow (first run, or after continue-as-new)."""

    campaign: CampaignInput
    plan: CampaignPlan | None = None
    progress: CampaignProgress | None = None


@dataclass(frozen=True)
class CampaignPlan:
    """The planner's decomposition of a campaign into chunked steps."""

    campaign_id: str
    template_version_id: int
    audience: int
    chunk_size: int
    chunk_concurrency: int
    chunks_per_run: int  # continue-as-new after this many chunks, to bound the history
    steps: list[str]
    # Undecided reviews expire after this long and their sends get the rules-tier email.
    review_timeout_s: int = 48 * 3600
    send_time: str = "now"  # best_hour or "HH:00" (local): hourly passes, each for those due


@dataclass(frozen=True)
class PageRequest:
    campaign_id: str
    after_contact_id: int
    chunk_size: int
    max_chunks: int
    due_at: str | None = None  # send-time optimisation: only contacts whose hour this is


@dataclass(frozen=True)
class ChunkBounds:
    """Contacts with ``after_contact_id < id <= last_contact_id`` in the campaign's segment."""

    after_contact_id: int
    last_contact_id: int


@dataclass(frozen=True)
class ChunkInput:
    campaign_id: str
    template_version_id: int
    bounds: ChunkBounds
    chunk_index: int
    # Revocations signalled to the workflow; the ledger is still checked per message at send time.
    revoked_contact_ids: list[int] = field(default_factory=list)
    due_at: str | None = None  # as PageRequest.due_at: the chunk sends only those due then


@dataclass(frozen=True)
class ChunkResult:
    sent: int
    suppressed: int
    failed: int
    # Sends found already done by an earlier attempt of this chunk (a retry or restarted worker).
    already_done: int = 0
    held: int = 0  # sends held for review of their cluster's content
    held_out: int = 0  # a control group's, not mailed (absent from results before holdouts)


@dataclass(frozen=True)
class ReviewRelease:
    campaign_id: str
    revoked_contact_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ReviewBacklog:
    """What is left to review in a campaign, and its totals so far."""

    open_reviews: int
    held: int
    sent: int
    suppressed: int
    failed: int


@dataclass(frozen=True)
class CampaignOutcome:
    campaign_id: str
    status: str
    sent: int
    suppressed: int
    failed: int


@dataclass(frozen=True)
class StatusUpdate:
    campaign_id: str
    status: str


# --- journeys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JourneyInput:
    tenant_id: str
    contact_id: int
    journey_key: str
    trigger: str  # the event name that started it, e.g. "milestone.birthday"
    trigger_event_id: int


@dataclass(frozen=True)
class JourneySignal:
    """An event of the person's, forwarded to their running journey (by id, never content)."""

    name: str
    event_id: int


@dataclass(frozen=True)
class JourneyStart:
    journey: JourneyInput
    run_id: str
    workflow_id: str


@dataclass(frozen=True)
class JourneyStepPlan:
    kind: str  # "send" or "wait"
    name: str = ""
    minutes: int = 0
    campaign_id: str = ""  # send: the journey email's campaign row
    send_time: str = "now"  # send: "now" or "best_hour"


@dataclass(frozen=True)
class JourneyPlan:
    """The definition version this run keeps, as loaded when it started."""

    definition_id: int
    version: int
    steps: list[JourneyStepPlan]
    exit_on: list[str]
    consented: bool


@dataclass(frozen=True)
class JourneySend:
    run_id: str
    tenant_id: str
    contact_id: int
    journey_key: str
    step: str
    campaign_id: str
    trigger: str
    send_time: str = "now"
    send_time_reason: str = ""  # best_hour: the hour chosen and why, for "why this email"


@dataclass(frozen=True)
class JourneySendResult:
    outcome: str  # sent, suppressed, failed, throttled or held_out (a control group's)
    retry_after_s: int = 0  # throttled: when the person's next window opens


@dataclass(frozen=True)
class SendTimePlan:
    delay_s: int
    local_hour: int
    reason: str


@dataclass(frozen=True)
class JourneyState:
    """The ``state`` query: where a run is."""

    step: str
    exit: str | None
    retriggers: int  # triggers absorbed while it ran (a second abandoned cart, say)


@dataclass(frozen=True)
class JourneyEnd:
    run_id: str
    status: str  # completed, exited or stopped
    reason: str
    emails_sent: int


# --- daily features ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeaturesRun:
    """One daily run: derive features, then emit the day's lapse and milestone events."""

    page_size: int = 1000
    # Carried across continue-as-new.
    phase: str = "derive"  # "derive", then "emit"
    after_contact_id: int = 0
    updated: int = 0
    emitted: int = 0


@dataclass(frozen=True)
class FeaturesPage:
    after_contact_id: int
    size: int


@dataclass(frozen=True)
class FeaturesPageResult:
    next_after: int | None  # None: no contacts left
    count: int  # contacts updated (derive) or events emitted (emit)


@dataclass(frozen=True)
class FeaturesOutcome:
    updated: int
    emitted: int


@dataclass(frozen=True)
class AbTestInput:
    test_id: str
    tenant_id: str
    variant_keys: list[str]
    cell_campaign_ids: list[str]  # one per variant, in variant order
    window_s: int
    tag_search_attributes: bool = True


@dataclass(frozen=True)
class AbLook:
    """Evaluate the test now; on the ``final`` look an inconclusive result means the default."""

    test_id: str
    look: int
    final: bool


@dataclass(frozen=True)
class AbVerdict:
    winner: str | None
    conclusive: bool
    reason: str
    probabilities: dict[str, float] = field(default_factory=dict)
    how: str = "decided"  # decided, default (inconclusive), manual


@dataclass(frozen=True)
class AbRollout:
    test_id: str
    verdict: AbVerdict


@dataclass
class AbProgress:
    status: str = "testing"  # testing, waiting, extended, rolling_out, completed, cancelled
    cells_done: int = 0
    window_ends_at: str | None = None
    winner: str | None = None
    how: str | None = None
    reason: str | None = None
    rollout_campaign_id: str | None = None


@dataclass(frozen=True)
class AbOutcome:
    status: str
    winner: str | None
    rollout_campaign_id: str | None


@dataclass(frozen=True)
class OutboundRun:
    """Input of one run of an endpoint's webhook workflow (first, or after continue-as-new)."""

    tenant_id: str
    endpoint_id: str
    delivered: int = 0  # totals carried across runs
    dead_lettered: int = 0
    batches_per_run: int = 200  # continue-as-new after this many, to bound the history


@dataclass(frozen=True)
class OutboundBatch:
    """The next outbox rows to post, by id; ``stop`` says the endpoint takes nothing now."""

    endpoint_id: str
    delivery_ids: list[int]
    stop: str | None = None  # "deleted" or "disabled"


@dataclass(frozen=True)
class OutboundFailure:
    """A batch whose retries ran out, and the last failure (fixed text and a status code)."""

    endpoint_id: str
    delivery_ids: list[int]
    reason: str


@dataclass(frozen=True)
class OutboundDeadLettered:
    dead_lettered: int
    disabled: bool  # the endpoint failed too many batches in a row and was turned off


@dataclass(frozen=True)
class OutboundOutcome:
    status: str  # idle (nothing left to send), disabled or deleted
    delivered: int
    dead_lettered: int


@dataclass(frozen=True)
class ErasureInput:
    """One person's erasure (ids only: what identified them is what is being removed)."""

    erasure_id: str
    tenant_id: str
    contact_id: int


@dataclass(frozen=True)
class ErasureOutcome:
    """Rows changed, by table (counts only)."""

    counts: dict[str, int]
