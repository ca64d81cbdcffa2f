"""The A/B test decision rule: Bayesian "probability to beat all", and the error rate it promises.

Each variant's true rate (opens, clicks or conversions per send) gets a Beta posterior from a
Beta(prior_alpha, prior_beta) prior and its counts. Monte Carlo draws from those posteriors give,
per variant, the probability that it is the best (``probability_to_beat_all``) and the expected
loss of choosing it (the rate given up, on average, if another variant is in fact best). A variant
wins when its probability to beat all reaches ``DecisionRule.threshold`` and every variant has had
``min_sent_per_variant`` sends; otherwise the result is inconclusive and says why in words a
marketer can act on.

These functions are pure and seeded. The workflow derives the seed from the test id
(``seed_for``), so a retried activity decides the same way; the decision itself is the activity's
result and so is recorded in history, never recomputed on replay (numpy does not promise the same
random stream across versions).

False winners: the bound in ``stated_false_winner_rate``
--------------------------------------------------------
Suppose all ``k`` variants share one true rate (an A/A test) and the workflow looks ``L`` times
(the test window, then at most one extension: ``L = 2``), each time on all data so far. Write
``P_i`` for variant i's posterior probability to be best and ``t`` for the threshold.

1. For large counts and a weak prior the posterior of a difference of rates is close to normal
   about the observed difference, so ``P(theta_i > theta_j | data) ~ Phi(Z_ij)`` with ``Z_ij`` the
   two-sample z statistic. Under the null ``Z_ij`` is standard normal, so ``Phi(Z_ij)`` is uniform
   and reaches ``t`` with probability ``1 - t``.
2. Beating all others implies beating any one of them: ``P_i <= P(theta_i > theta_j | data)``.
   So variant i is declared at one look with probability at most ``~ 1 - t``.
3. The ``P_i`` sum to 1 and ``t > 0.5``, so at most one variant can reach ``t``: the chance that
   some variant is declared at one look is the sum over variants, at most ``k * (1 - t)``.
4. A winner over the whole test needs one at some look: union bound over looks.

    stated_false_winner_rate = min(1, L * k * (1 - t))        (0.20 for k=2, L=2, t=0.95)

Where the slack is: with two variants steps 2 and 3 are equalities (``P_A = P(theta_A >
theta_B)``), so one look's rate is about ``2 * (1 - t)``; the only slack is step 4, and it is
real, because the second look re-uses the first look's data and the two looks' statistics are
strongly correlated. With three or more variants step 2 is loose as well: beating all is much
rarer than beating one. Step 1 is an approximation that can err either way: with few successes
the binomial is lumpy, and ``P_i`` itself carries Monte Carlo error (standard deviation
``sqrt(t * (1 - t) / samples)``, 0.0015 at the defaults). The slack of step 4 absorbs both at the
sizes ``min_sent_per_variant`` allows; ``tests/test_ab_decision.py`` checks the bound by
simulating A/A tests, including a low-rate one. The bound is not a promise for informative priors.
Measured over 8,000 simulated two-variant A/A tests (10% rate, 500 then 1,000 sends a variant):
0.096 at the first look, 0.152 over both, against the stated 0.20; with three variants about
0.04 against 0.30. With a single look and two variants the "bound" is the nominal rate itself,
approximately, and simulation puts it within noise of it (0.096 against 0.10).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

MIN_VARIANTS = 2
MAX_VARIANTS = 8
MIN_SAMPLES = 1_000  # fewer draws and the Monte Carlo error rivals the margin being tested
MAX_SAMPLES = 1_000_000  # samples x variants float64s are held in memory at once


@dataclass(frozen=True)
class VariantStats:
    """One variant's counts at a look: sends, and sends that succeeded on the test's metric."""

    key: str
    sent: int
    successes: int

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("variant key must not be empty")
        if self.sent < 0:
            raise ValueError(f"variant {self.key}: sent must be >= 0, got {self.sent}")
        if self.successes < 0:
            raise ValueError(f"variant {self.key}: successes must be >= 0, got {self.successes}")
        if self.successes > self.sent:
            raise ValueError(
                f"variant {self.key}: successes ({self.successes}) exceed sent ({self.sent})"
            )


@dataclass(frozen=True)
class DecisionRule:
    """When a variant wins: P(best) of at least ``threshold`` once each variant has
    ``min_sent_per_variant`` sends. ``samples`` Monte Carlo draws per variant; a
    Beta(``prior_alpha``, ``prior_beta``) prior on every variant's rate."""

    threshold: float = 0.95
    min_sent_per_variant: int = 200
    samples: int = 20_000
    prior_alpha: float = 1.0
    prior_beta: float = 1.0

    def __post_init__(self) -> None:
        # Above one half, at most one variant can reach the threshold.
        if not 0.5 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0.5, 1), got {self.threshold}")
        if self.min_sent_per_variant < 1:
            raise ValueError(f"min_sent_per_variant must be >= 1, got {self.min_sent_per_variant}")
        if not MIN_SAMPLES <= self.samples <= MAX_SAMPLES:
            raise ValueError(
                f"samples must be in [{MIN_SAMPLES}, {MAX_SAMPLES}], got {self.samples}"
            )
        for name, value in (("prior_alpha", self.prior_alpha), ("prior_beta", self.prior_beta)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value}")


@dataclass(frozen=True)
class Decision:
    """The outcome of one look. ``winner`` is set exactly when ``conclusive``; ``reason`` is for
    people. ``expected_loss`` is in rate units (0.002 = 0.2 percentage points)."""

    winner: str | None
    probabilities: dict[str, float]
    reason: str
    conclusive: bool
    expected_loss: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.conclusive != (self.winner is not None):
            raise ValueError("a decision is conclusive exactly when it names a winner")


def seed_for(test_id: str) -> int:
    """A stable seed from a test id (``hash()`` is salted per process, so it will not do)."""
    return int.from_bytes(hashlib.sha256(test_id.encode()).digest()[:8], "big")


def probability_to_beat_all(
    stats: Sequence[VariantStats], rule: DecisionRule, seed: int
) -> dict[str, float]:
    """Each variant's posterior probability of having the highest rate."""
    return _posterior_summary(stats, rule, seed)[0]


def expected_loss(stats: Sequence[VariantStats], rule: DecisionRule, seed: int) -> dict[str, float]:
    """Each variant's posterior expected shortfall from the best rate, ``E[max_j theta_j -
    theta_i]``: what choosing it costs, on average, if it is not the best."""
    return _posterior_summary(stats, rule, seed)[1]


def decide(stats: Sequence[VariantStats], rule: DecisionRule, seed: int) -> Decision:
    """One look at a test: a winner, or an inconclusive result with the reason."""
    probabilities, losses = _posterior_summary(stats, rule, seed)
    leader = max(probabilities, key=lambda key: probabilities[key])
    short = [s for s in stats if s.sent < rule.min_sent_per_variant]
    needed = _pct(rule.threshold)
    if short:
        counts = _join([f"{s.key} has {s.sent}" for s in short])
        reason = f"too few sends: {counts} of the {rule.min_sent_per_variant} needed per variant"
        return Decision(None, probabilities, reason, False, losses)
    if probabilities[leader] < rule.threshold:
        reason = (
            f"variant {leader} leads with {_pct(probabilities[leader])} probability to be best;"
            f" {needed} needed"
        )
        return Decision(None, probabilities, reason, False, losses)
    reason = (
        f"variant {leader} beats all others with {_pct(probabilities[leader])} probability"
        f" ({needed} needed)"
    )
    return Decision(leader, probabilities, reason, True, losses)


def stated_false_winner_rate(rule: DecisionRule, variants: int, looks: int) -> float:
    """Upper bound on declaring any winner in an A/A test: ``looks * variants * (1 - threshold)``,
    capped at 1. The derivation and its assumptions are in the module docstring."""
    if not MIN_VARIANTS <= variants <= MAX_VARIANTS:
        raise ValueError(f"variants must be in [{MIN_VARIANTS}, {MAX_VARIANTS}], got {variants}")
    if looks < 1:
        raise ValueError(f"looks must be >= 1, got {looks}")
    return min(1.0, looks * variants * (1 - rule.threshold))


def _posterior_summary(
    stats: Sequence[VariantStats], rule: DecisionRule, seed: int
) -> tuple[dict[str, float], dict[str, float]]:
    """P(best) and expected loss per variant, from one set of draws so the two agree."""
    _check_variants(stats)
    sent = np.array([s.sent for s in stats], dtype=np.float64)
    successes = np.array([s.successes for s in stats], dtype=np.float64)
    rng = np.random.default_rng(seed)
    # One row per variant, one column per draw: reductions over variants then run elementwise.
    draws: NDArray[np.float64] = rng.beta(
        (rule.prior_alpha + successes)[:, np.newaxis],
        (rule.prior_beta + sent - successes)[:, np.newaxis],
        size=(len(stats), rule.samples),
    )
    best = draws.max(axis=0)
    # Draws are continuous, so a draw tied with the best is the best itself (exact ties between
    # variants have probability zero).
    wins = (draws == best).sum(axis=1) / rule.samples
    losses = best.mean() - draws.mean(axis=1)
    keys = [s.key for s in stats]
    return (
        {key: float(p) for key, p in zip(keys, wins, strict=True)},
        {key: float(loss) for key, loss in zip(keys, losses, strict=True)},
    )


def _check_variants(stats: Sequence[VariantStats]) -> None:
    if not MIN_VARIANTS <= len(stats) <= MAX_VARIANTS:
        raise ValueError(
            f"an A/B test needs {MIN_VARIANTS} to {MAX_VARIANTS} variants, got {len(stats)}"
        )
    keys = [s.key for s in stats]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate variant keys: {', '.join(duplicates)}")


def _pct(p: float) -> str:
    """A probability as a percentage, rounded down to 0.1 so a near miss never reads as a hit."""
    tenths = math.floor(p * 1000 + 1e-9)
    return f"{tenths // 10}%" if tenths % 10 == 0 else f"{tenths / 10:.1f}%"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
