"""Lift of a treatment over a control: the difference of two rates, with a 95% interval.

A holdout (``tailor/holdout.py``) and an "AI vs plain" A/B test both end as two counts
per arm: people, and people who opened, clicked or bought. ``lift`` turns them into what a report
shows: each rate, the absolute lift (treatment rate minus control rate, in rate points), the
relative lift (that difference over the control rate), a confidence interval for the difference
and a two-sided p-value. Pure and dependency-free, so reports, the API and tests share it.

The interval: Newcombe's hybrid score interval
----------------------------------------------
For each arm, Wilson's score interval ``(l, u)`` for its rate ``p``; then for ``d = p1 - p2``

    lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)
    upper = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)

(Newcombe RG, "Interval estimation for the difference between independent proportions:
comparison of eleven methods", Statistics in Medicine 17 (1998) 873-890, method 10). Unlike the
textbook Wald interval ``d ± z·se`` it keeps close to its nominal coverage with small samples
and with rates near 0 or 1, never leaves [-1, 1], and is not degenerate when an arm has no
successes at all (0 opens of 10 is "somewhere between 0% and 28%", not "exactly 0%"), which is
common for conversions in a 5% holdout.

Honesty at the edges: an arm with no people has no rate, so everything that needs it is None
(never a made-up zero). The relative lift is None when the control rate is 0 (a division by
zero is not "infinite lift"). The p-value is the two-proportion z-test with the pooled rate (the
same as Pearson's chi-square without continuity correction); with fewer than 5 expected
successes or failures in an arm its normal approximation is poor, and ``small_sample`` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
MIN_EXPECTED = 5  # the usual rule for the z-test's (chi-square's) normal approximation


@dataclass(frozen=True)
class Arm:
    """One arm's counts: people in it, and people who did the thing measured."""

    n: int
    successes: int

    def __post_init__(self) -> None:
        if self.n < 0 or not 0 <= self.successes <= self.n:
            raise ValueError(f"need 0 <= successes <= n, got {self.successes} of {self.n}")

    @property
    def rate(self) -> float | None:
        return self.successes / self.n if self.n else None


@dataclass(frozen=True)
class Lift:
    treatment_rate: float | None
    control_rate: float | None
    difference: float | None  # treatment rate - control rate (absolute lift)
    relative: float | None  # difference / control rate
    interval: tuple[float, float] | None  # 95% for the difference (Newcombe hybrid score)
    p_value: float | None  # two-sided, two-proportion z-test
    small_sample: bool  # the p-value's normal approximation is poor at these counts

    @property
    def significant(self) -> bool:
        """The interval excludes 0: the data rule out "no difference" at the 95% level."""
        return self.interval is not None and (self.interval[0] > 0 or self.interval[1] < 0)

    def as_dict(self) -> dict[str, object]:
        return {
            "treatment_rate": self.treatment_rate,
            "control_rate": self.control_rate,
            "difference": self.difference,
            "relative": self.relative,
            "ci95": list(self.interval) if self.interval is not None else None,
            "p_value": self.p_value,
            "small_sample": self.small_sample,
            "significant": self.significant,
        }


def wilson(arm: Arm, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for one arm's rate (the arm must have people)."""
    n, p = arm.n, arm.successes / arm.n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - half) / scale), min(1.0, (centre + half) / scale)


def newcombe(treatment: Arm, control: Arm, z: float = Z_95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for treatment rate - control rate."""
    p1, p2 = treatment.successes / treatment.n, control.successes / control.n
    l1, u1 = wilson(treatment, z)
    l2, u2 = wilson(control, z)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, lower), min(1.0, upper)


def two_proportion_p(treatment: Arm, control: Arm) -> float:
    """Two-sided p-value of the pooled two-proportion z-test. Both arms at 0% (or both at
    100%) show no difference at all: 1.0."""
    pooled = (treatment.successes + control.successes) / (treatment.n + control.n)
    if pooled in (0.0, 1.0):
        return 1.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / treatment.n + 1 / control.n))
    z = (treatment.successes / treatment.n - control.successes / control.n) / se
    return math.erfc(abs(z) / math.sqrt(2))


def lift(treatment: Arm, control: Arm) -> Lift:
    """The treatment's lift over the control; see the module docstring for the edges."""
    t_rate, c_rate = treatment.rate, control.rate
    if t_rate is None or c_rate is None:
        return Lift(t_rate, c_rate, None, None, None, None, small_sample=True)
    difference = t_rate - c_rate
    pooled = (treatment.successes + control.successes) / (treatment.n + control.n)
    expected = [
        count for arm in (treatment, control) for count in (arm.n * pooled, arm.n * (1 - pooled))
    ]
    return Lift(
        treatment_rate=t_rate,
        control_rate=c_rate,
        difference=difference,
        relative=difference / c_rate if c_rate > 0 else None,
        interval=newcombe(treatment, control),
        p_value=two_proportion_p(treatment, control),
        small_sample=min(expected) < MIN_EXPECTED,
    )
