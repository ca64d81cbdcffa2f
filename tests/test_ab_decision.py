"""The A/B decision rule: seeded A/A and A/B simulations against its stated error rates, the
reasons it gives, reproducibility, and input validation.

Simulations draw binomial counts from fixed seeds, so every figure here is deterministic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable

import numpy as np
import pytest

from tailor.ab_tests.decision import (
    Decision,
    DecisionRule,
    VariantStats,
    decide,
    expected_loss,
    probability_to_beat_all,
    seed_for,
    stated_false_winner_rate,
)

LOOKS = 2  # the test window, then one extension


def variants(sent: int, successes: Iterable[int]) -> list[VariantStats]:
    return [VariantStats(chr(ord("A") + i), sent, int(s)) for i, s in enumerate(successes)]


def aa_winner_rates(
    *, k: int, rate: float, sent: int, rule: DecisionRule, runs: int, seed: int
) -> tuple[float, float]:
    """Share of simulated A/A tests that declare a winner at the first look (``sent`` per
    variant), and at either look (the second, at twice that, only if the first was
    inconclusive) — as the workflow does."""
    rng = np.random.default_rng(seed)
    first = either = 0
    for run in range(runs):
        window = rng.binomial(sent, rate, size=k)
        extended = window + rng.binomial(sent, rate, size=k)
        # The workflow seeds both looks from the test id; the run number stands in for it.
        if decide(variants(sent, window), rule, seed=run).conclusive:
            first += 1
            either += 1
        elif decide(variants(2 * sent, extended), rule, seed=run).conclusive:
            either += 1
    return first / runs, either / runs


# Measured at these seeds (first look, either look): (0.107, 0.163), (0.078, 0.138), (0.015, 0.028);
# the bounds are 0.20, 0.20 and 0.30.
@pytest.mark.parametrize(
    ("k", "rate", "sent", "runs"),
    [
        (2, 0.10, 500, 700),
        (2, 0.02, 200, 500),  # four expected successes a cell: lumpy, far from normal
        (3, 0.10, 500, 400),
    ],
)
def test_aa_tests_declare_false_winners_no_more_often_than_stated(
    k: int, rate: float, sent: int, runs: int
) -> None:
    rule = DecisionRule()
    first, either = aa_winner_rates(k=k, rate=rate, sent=sent, rule=rule, runs=runs, seed=k)
    bound = stated_false_winner_rate(rule, variants=k, looks=LOOKS)
    assert either <= bound, f"{k} variants at {rate:.0%}: {either:.3f} false winners > {bound:.3f}"
    assert first <= either
    if k == 2:
        # With two variants one look is close to the nominal 2 * (1 - t): the simulation is
        # sensitive enough to see the rate the bound is built from.
        assert first >= 0.5 * k * (1 - rule.threshold), f"first look only {first:.3f}"


def test_a_loose_threshold_declares_many_more_false_winners() -> None:
    """The same simulation can exceed the default rule's bound: the check above can fail."""
    loose = DecisionRule(threshold=0.6)
    _, either = aa_winner_rates(k=2, rate=0.10, sent=500, rule=loose, runs=300, seed=2)
    # Measured at this seed: 0.947 (0.817 at the first look).
    assert either > 2.5 * stated_false_winner_rate(DecisionRule(), variants=2, looks=LOOKS)


def test_a_truly_better_variant_is_usually_picked_and_the_worse_one_almost_never() -> None:
    """10% against 13% click rate, 2,000 sends a cell, one look."""
    rule = DecisionRule()
    rng = np.random.default_rng(13)
    runs = 400
    picked = {"A": 0, "B": 0}
    for run in range(runs):
        decision = decide(variants(2_000, rng.binomial(2_000, [0.10, 0.13])), rule, seed=run)
        if decision.winner is not None:
            picked[decision.winner] += 1
    # Measured at this seed: B in 363 of 400 runs (0.9075), A in none.
    assert picked["B"] / runs >= 0.80, picked
    assert picked["A"] / runs <= (1 - rule.threshold) + 0.01, picked


def test_too_few_sends_is_inconclusive_however_large_the_lead() -> None:
    stats = [VariantStats("A", 120, 60), VariantStats("B", 300, 3), VariantStats("C", 150, 1)]
    decision = decide(stats, DecisionRule(), seed=1)
    assert decision == Decision(
        winner=None,
        probabilities=decision.probabilities,
        reason="too few sends: A has 120 and C has 150 of the 200 needed per variant",
        conclusive=False,
        expected_loss=decision.expected_loss,
    )
    # The lead itself is overwhelming; only the sample-size rule holds the decision back.
    assert decision.probabilities["A"] > 0.999


def test_a_close_race_is_inconclusive_and_says_who_leads_by_how_much() -> None:
    stats = variants(1_000, [100, 115])
    decision = decide(stats, DecisionRule(), seed=1)
    assert decision.winner is None and not decision.conclusive
    match = re.fullmatch(
        r"variant B leads with (\d+(?:\.\d)?)% probability to be best; 95% needed",
        decision.reason,
    )
    assert match, decision.reason
    # Rounded down to a tenth, so a near miss never reads as the threshold.
    assert float(match[1]) == math.floor(decision.probabilities["B"] * 1000) / 10


def test_a_clear_winner_is_named_with_its_probability() -> None:
    decision = decide(variants(2_000, [200, 280]), DecisionRule(), seed=1)
    assert decision.conclusive and decision.winner == "B"
    assert re.fullmatch(
        r"variant B beats all others with \d+(\.\d)?% probability \(95% needed\)", decision.reason
    )
    # Choosing the winner costs almost nothing; choosing the loser costs about the difference.
    assert decision.expected_loss["B"] < 1e-4
    assert decision.expected_loss["A"] == pytest.approx(0.04, abs=0.005)


def test_probability_matches_the_exact_two_variant_formula() -> None:
    """P(theta_B > theta_A) in closed form for integer Beta parameters (Evan Miller)."""
    a, b = VariantStats("A", 2_000, 200), VariantStats("B", 2_000, 225)
    alpha_a, beta_a = 1 + a.successes, 1 + a.sent - a.successes
    alpha_b, beta_b = 1 + b.successes, 1 + b.sent - b.successes

    def log_beta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    exact = sum(
        math.exp(
            log_beta(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - log_beta(1 + i, beta_b)
            - log_beta(alpha_a, beta_a)
        )
        for i in range(alpha_b)
    )
    rule = DecisionRule()
    estimate = probability_to_beat_all([a, b], rule, seed=7)["B"]
    monte_carlo_sd = math.sqrt(exact * (1 - exact) / rule.samples)
    assert abs(estimate - exact) < 4 * monte_carlo_sd, (estimate, exact)


def test_probabilities_sum_to_one_and_equal_variants_share_them() -> None:
    probabilities = probability_to_beat_all(variants(1_000, [100] * 4), DecisionRule(), seed=3)
    assert list(probabilities) == ["A", "B", "C", "D"]
    assert sum(probabilities.values()) == pytest.approx(1)
    assert all(p == pytest.approx(0.25, abs=0.02) for p in probabilities.values())
    losses = expected_loss(variants(1_000, [100] * 4), DecisionRule(), seed=3)
    assert all(loss > 0 for loss in losses.values())


def test_the_same_seed_decides_the_same_way_and_other_seeds_differ() -> None:
    stats, rule = variants(1_000, [100, 112, 105]), DecisionRule()
    seed = seed_for("ab-test-42")
    assert decide(stats, rule, seed) == decide(stats, rule, seed)
    assert decide(stats, rule, seed + 1).probabilities != decide(stats, rule, seed).probabilities


def test_seeds_from_test_ids_are_stable_across_processes() -> None:
    # Pinned: ``hash()`` would change with PYTHONHASHSEED and a retry could decide differently.
    assert seed_for("ab-test-42") == 0x101FE653E6C57FE2
    assert seed_for("ab-test-43") != seed_for("ab-test-42")


def test_the_stated_bound_is_the_union_bound_capped_at_one() -> None:
    assert stated_false_winner_rate(DecisionRule(), variants=2, looks=2) == pytest.approx(0.2)
    assert stated_false_winner_rate(DecisionRule(), variants=3, looks=1) == pytest.approx(0.15)
    assert stated_false_winner_rate(DecisionRule(threshold=0.6), variants=8, looks=2) == 1.0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: VariantStats("A", -1, 0), "variant A: sent must be >= 0, got -1"),
        (lambda: VariantStats("A", 10, -2), "variant A: successes must be >= 0, got -2"),
        (lambda: VariantStats("A", 10, 11), r"variant A: successes \(11\) exceed sent \(10\)"),
        (lambda: VariantStats("", 10, 1), "variant key must not be empty"),
        (lambda: DecisionRule(threshold=0.5), r"threshold must be in \(0.5, 1\), got 0.5"),
        (lambda: DecisionRule(threshold=1.0), r"threshold must be in \(0.5, 1\), got 1.0"),
        (lambda: DecisionRule(min_sent_per_variant=0), "min_sent_per_variant must be >= 1"),
        (lambda: DecisionRule(samples=10), r"samples must be in \[1000, 1000000\], got 10"),
        (lambda: DecisionRule(prior_alpha=0), "prior_alpha must be a positive finite number"),
        (lambda: DecisionRule(prior_beta=math.nan), "prior_beta must be a positive finite"),
        (lambda: decide(variants(500, [50]), DecisionRule(), 1), "needs 2 to 8 variants, got 1"),
        (lambda: decide(variants(500, [50] * 9), DecisionRule(), 1), "needs 2 to 8 variants"),
        (
            lambda: decide(
                [VariantStats("A", 500, 50), VariantStats("A", 500, 60)], DecisionRule(), 1
            ),
            "duplicate variant keys: A",
        ),
        (lambda: stated_false_winner_rate(DecisionRule(), 1, 2), "variants must be in"),
        (lambda: stated_false_winner_rate(DecisionRule(), 2, 0), "looks must be >= 1, got 0"),
        (lambda: Decision("A", {}, "", conclusive=False), "conclusive exactly when"),
    ],
)
def test_invalid_input_is_refused_with_a_clear_message(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build()
