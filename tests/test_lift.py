"""Lift statistics against published and hand-computed values, and honest edges."""

from __future__ import annotations

import pytest

from tailor.analytics.lift import Arm, lift, newcombe, wilson

# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score), to the
# four decimals printed there: (treatment x/n, control x/n) -> 95% interval for the difference.
NEWCOMBE_TABLE_II = [
    ((56, 70), (48, 80), (0.0524, 0.3339)),
    ((9, 10), (3, 10), (0.1705, 0.8090)),
    ((5, 56), (0, 29), (-0.0381, 0.1926)),
    ((0, 10), (0, 20), (-0.1611, 0.2775)),
    ((0, 10), (0, 10), (-0.2775, 0.2775)),
    ((10, 10), (0, 20), (0.6791, 1.0000)),
    ((10, 10), (0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("treatment", "control", "expected"), NEWCOMBE_TABLE_II)
def test_interval_matches_newcombes_published_values(
    treatment: tuple[int, int], control: tuple[int, int], expected: tuple[float, float]
) -> None:
    low, high = newcombe(Arm(treatment[1], treatment[0]), Arm(control[1], control[0]))
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_interval_by_hand() -> None:
    # 0 of 10: upper = z²/(n + z²) = 3.8415 / 13.8415 = 0.2775; lower exactly 0.
    low, high = wilson(Arm(10, 0))
    assert low == 0.0 and high == pytest.approx(0.27753, abs=1e-5)


def test_a_holdout_lift_reads_as_a_report_shows_it() -> None:
    # 56/70 opened in the treatment, 48/80 in the control: 80% vs 60%.
    result = lift(Arm(70, 56), Arm(80, 48))
    assert result.treatment_rate == pytest.approx(0.8)
    assert result.control_rate == pytest.approx(0.6)
    assert result.difference == pytest.approx(0.2)  # 20 rate points
    assert result.relative == pytest.approx(1 / 3)  # a third more
    # Pooled z-test by hand: p = 104/150, se = sqrt(p(1-p)(1/70 + 1/80)) = 0.07547, z = 2.650;
    # the same as Pearson's chi-square without continuity correction (scipy: 0.0080451).
    assert result.p_value == pytest.approx(0.0080451, abs=1e-6)
    assert result.significant and not result.small_sample
    assert result.as_dict()["ci95"] == pytest.approx([0.0524, 0.3339], abs=1e-4)


def test_no_difference_at_scale_is_not_significant() -> None:
    # 5.3% vs 5.0% opens over 10,000 each: chi-square p = 0.33715 (scipy, no correction).
    result = lift(Arm(10_000, 530), Arm(10_000, 500))
    assert result.p_value == pytest.approx(0.33715, abs=1e-5)
    assert result.interval is not None and result.interval[0] < 0 < result.interval[1]
    assert not result.significant


def test_an_empty_arm_has_no_rate_and_no_interval() -> None:
    result = lift(Arm(100, 7), Arm(0, 0))
    assert result.treatment_rate == pytest.approx(0.07)
    assert result.control_rate is None
    assert (result.difference, result.relative, result.interval, result.p_value) == (
        None, None, None, None,
    )  # fmt: skip
    assert not result.significant


def test_zero_control_successes_give_no_relative_lift_but_an_interval() -> None:
    result = lift(Arm(56, 5), Arm(29, 0))
    assert result.relative is None  # not "infinite lift"
    assert result.interval == pytest.approx((-0.0381, 0.1926), abs=1e-4)
    assert result.small_sample  # 5 conversions in all: the z-test's p is rough
    # Both arms at zero: no evidence of any difference.
    assert lift(Arm(10, 0), Arm(20, 0)).p_value == 1.0


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="successes"):
        Arm(10, 11)
    with pytest.raises(ValueError):
        Arm(-1, 0)
