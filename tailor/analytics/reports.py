"""Reports for marketers, from the rollups: what happened to a campaign's, a journey's or an A/B
test's emails, per tier, provider and arm, over time, and by signup cohort.

Definitions (the README's "Tracking, webhooks and reports" repeats them):

- ``sent``: accepted by a provider. ``reached``: sent minus hard bounces, the base of the rates a
  reader can affect (open, click, conversion, complaint, unsubscribe rates).
- ``opened`` / ``clicked``: emails opened / clicked by a person at least once (unique per email;
  machine opens and clicks, e.g. Apple Mail Privacy Protection or link scanners, never count).
- ``ctr`` clicked / reached; ``ctor`` clicked / opened.
- ``conversions`` / ``revenue``: orders attributed by last human click; ``conversions_open`` /
  ``revenue_open``: by the weaker open-only rule, never added to the first.
- ``ordered``: emails followed by an order within the click window, clicked or not; the
  conversion measure of lift, because a control group that was not mailed cannot click.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from tailor.analytics.lift import Arm, lift
from tailor.store.reports import RollupSum, cohort_cells, cohort_sizes, sum_rollups
from tailor.store.rollups import COUNTERS

Counts = Mapping[str, int]


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole > 0 else None


def metrics(counts: Counts) -> dict[str, Any]:
    """Counters and the rates made from them (None where the base is zero)."""
    reached = max(counts["sent"] - counts["bounced"], 0)
    return {
        **{c: counts[c] for c in COUNTERS if not c.endswith("_cents")},
        "revenue": counts["revenue_cents"] / 100,
        "revenue_open": counts["revenue_open_cents"] / 100,
        "reached": reached,
        "bounce_rate": _ratio(counts["bounced"], counts["sent"]),
        "complaint_rate": _ratio(counts["complained"], reached),
        "unsubscribe_rate": _ratio(counts["unsubscribed"], reached),
        "open_rate": _ratio(counts["opened"], reached),
        "ctr": _ratio(counts["clicked"], reached),
        "ctor": _ratio(counts["clicked"], counts["opened"]),
        "conversion_rate": _ratio(counts["conversions"], reached),
    }


def total(sums: Iterable[RollupSum]) -> dict[str, int]:
    out = dict.fromkeys(COUNTERS, 0)
    for s in sums:
        for c in COUNTERS:
            out[c] += s.counts[c]
    return out


# --- Lift ---------------------------------------------------------------------------------------

LIFT_MEASURES = {"open": "opened", "click": "clicked", "conversion": "ordered"}


def lift_between(treatment: Counts, control: Counts) -> dict[str, dict[str, Any] | None]:
    """Lift of each measure, treatment over control, with its 95% confidence interval.

    People, not emails reached, are the base: everyone assigned to an arm, mailed or held out,
    so the comparison is the randomised one. A measure the control cannot show (opens and clicks
    of a control that was not mailed) is None.
    """
    out: dict[str, dict[str, Any] | None] = {}
    t_n = treatment["sent"] + treatment["held_out"]
    c_n = control["sent"] + control["held_out"]
    for name, counter in LIFT_MEASURES.items():
        if counter != "ordered" and control["sent"] == 0:
            out[name] = None
            continue
        out[name] = lift(Arm(t_n, treatment[counter]), Arm(c_n, control[counter])).as_dict()
    return out


# --- Reports ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None


async def campaigns_report(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    campaign_ids: Sequence[str],
    window: Window = Window(),
) -> dict[str, Any]:
    """Totals, per tier, per provider and per arm (with lift) of these campaigns together."""
    by = await sum_rollups(
        conn, tenant_id=tenant_id, campaign_ids=campaign_ids,
        by=("generator", "provider", "control"), since=window.since, until=window.until,
    )  # fmt: skip
    tiers: dict[str, list[RollupSum]] = defaultdict(list)
    providers: dict[str, list[RollupSum]] = defaultdict(list)
    arms: dict[bool, list[RollupSum]] = defaultdict(list)
    for s in by:
        tiers[s.group["generator"] or "none"].append(s)
        if s.group["provider"]:
            providers[s.group["provider"]].append(s)
        arms[bool(s.group["control"])].append(s)
    report: dict[str, Any] = {
        "totals": metrics(total(by)),
        "by_tier": [{"generator": k, **metrics(total(v))} for k, v in sorted(tiers.items())],
        "by_provider": [{"provider": k, **metrics(total(v))} for k, v in sorted(providers.items())],
        "holdout": None,
    }
    if True in arms:
        treatment, control = total(arms[False]), total(arms[True])
        report["holdout"] = {
            "treatment_group": metrics(treatment),
            "control_group": metrics(control),
            "lift": lift_between(treatment, control),
        }
    return report


async def series(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    campaign_ids: Sequence[str],
    step: str,
    timezone: str,
    window: Window = Window(),
) -> list[dict[str, Any]]:
    """Counters per hour (UTC) or per day (the tenant's time zone), oldest first."""
    hours = await sum_rollups(
        conn, tenant_id=tenant_id, campaign_ids=campaign_ids, by=("hour",),
        since=window.since, until=window.until,
    )  # fmt: skip
    if step == "hour":
        return [{"at": s.group["hour"].isoformat(), **metrics(s.counts)} for s in hours]
    zone = ZoneInfo(timezone)
    days: dict[str, list[RollupSum]] = defaultdict(list)
    for s in hours:
        days[s.group["hour"].astimezone(zone).date().isoformat()].append(s)
    return [{"at": day, **metrics(total(v))} for day, v in sorted(days.items())]


async def deliverability(
    conn: AsyncConnection, *, tenant_id: str, window: Window
) -> list[dict[str, Any]]:
    """Per provider, across all of the tenant's campaigns: sent, bounces, complaints, rates."""
    by = await sum_rollups(
        conn, tenant_id=tenant_id, by=("provider",), since=window.since, until=window.until
    )
    return [
        {"provider": s.group["provider"], **metrics(s.counts)} for s in by if s.group["provider"]
    ]


COHORT_NAMES = {"open": "opened", "click": "clicked", "order": "bought"}


async def cohorts(
    conn: AsyncConnection, *, tenant_id: str, months: int, now: datetime
) -> list[dict[str, Any]]:
    """Contacts by signup month × weeks since signup: the share who opened, clicked, bought."""
    back = now.year * 12 + now.month - 1 - (months - 1)
    first = now.replace(year=back // 12, month=back % 12 + 1, day=1, hour=0, minute=0, second=0,
                        microsecond=0)  # fmt: skip
    sizes = await cohort_sizes(conn, tenant_id=tenant_id, since=first)
    cells = await cohort_cells(conn, tenant_id=tenant_id, since_month=first.strftime("%Y-%m"))
    weeks: dict[str, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for cell in cells:
        weeks[cell.month][cell.week][cell.metric] = cell.contacts
    out = []
    for month in sorted(set(sizes) | set(weeks)):
        size = sizes.get(month, 0)
        out.append(
            {
                "month": month,
                "contacts": size,
                "weeks": [
                    {
                        "week": week,
                        **{COHORT_NAMES[m]: n for m, n in done.items()},
                        **{f"{COHORT_NAMES[m]}_share": _ratio(n, size) for m, n in done.items()},
                    }
                    for week, done in sorted(weeks[month].items())
                ],
            }
        )
    return out
