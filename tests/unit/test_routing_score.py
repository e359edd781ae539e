"""The router's arithmetic: normalization, composite scores, ranking, variance-proportional
weights and weight validation (aurea.routing._score)."""

from __future__ import annotations

import math

import pytest

from aurea.routing import (
    Factor,
    FactorScores,
    Figures,
    Weights,
    factor_scores,
    inverse_ratio,
    optimize,
    rank,
    weight_problems,
)

BALANCED = Weights(cost=0.4, quality=0.4, latency=0.2)


def fig(cost: float, success: float = 1.0, latency: float | None = 0.1) -> Figures:
    return Figures(cost_nanos=cost, success_rate=success, latency_s=latency, live=True)


# -- normalization --------------------------------------------------------------------------


def test_inverse_ratio_scores_the_lowest_one_and_the_others_by_ratio() -> None:
    assert inverse_ratio([4.0, 1.0, 2.0]) == [0.25, 1.0, 0.5]


def test_normalization_with_one_model_gives_it_full_marks() -> None:
    assert inverse_ratio([123.0]) == [1.0]
    [only] = factor_scores([fig(cost=5_000, success=0.7, latency=2.5)])
    assert only == FactorScores(cost=1.0, quality=0.7, latency=1.0)


def test_equal_values_all_score_one() -> None:
    assert inverse_ratio([3.0, 3.0, 3.0]) == [1.0, 1.0, 1.0]


def test_a_zero_scores_one_and_makes_every_positive_value_zero() -> None:
    assert inverse_ratio([0.0, 5.0, 0.0]) == [1.0, 0.0, 1.0]
    assert inverse_ratio([]) == []


def test_normalization_is_relative_to_the_candidates_not_absolute() -> None:
    cheap = factor_scores([fig(cost=1), fig(cost=2)])
    pricey = factor_scores([fig(cost=1000), fig(cost=2000)])
    assert [s.cost for s in cheap] == [s.cost for s in pricey] == [1.0, 0.5]


def test_unknown_latency_counts_as_the_mean_of_the_known_ones() -> None:
    scores = factor_scores([fig(1, latency=0.1), fig(1, latency=0.3), fig(1, latency=None)])
    # mean of known = 0.2: the unknown one is 0.1 / 0.2
    assert [s.latency for s in scores] == pytest.approx([1.0, 1 / 3, 0.5])


def test_no_known_latency_at_all_favours_nobody() -> None:
    scores = factor_scores([fig(1, latency=None), fig(2, latency=None)])
    assert [s.latency for s in scores] == [1.0, 1.0]


def test_quality_is_the_success_rate_itself_clamped() -> None:
    scores = factor_scores([fig(1, success=0.25), fig(1, success=1.5), fig(1, success=-1)])
    assert [s.quality for s in scores] == [0.25, 1.0, 0.0]


# -- composite and ordering -----------------------------------------------------------------


def test_composite_is_the_weighted_sum() -> None:
    s = FactorScores(cost=0.5, quality=1.0, latency=0.25)
    assert s.combine(BALANCED) == pytest.approx(0.5 * 0.4 + 1.0 * 0.4 + 0.25 * 0.2)


def test_ordering_follows_the_weights() -> None:
    # "fast": pricey and quick; "cheap": a quarter of the price, four times as slow.
    names = ["fast", "cheap"]
    scores = factor_scores([fig(cost=400, latency=0.1), fig(cost=100, latency=0.4)])
    cost_only = Weights(cost=1.0, quality=0.0, latency=0.0)
    latency_only = Weights(cost=0.0, quality=0.0, latency=1.0)
    assert [names[i] for i in rank(names, scores, cost_only, BALANCED)] == ["cheap", "fast"]
    assert [names[i] for i in rank(names, scores, latency_only, BALANCED)] == ["fast", "cheap"]


def test_a_failing_model_ranks_below_a_healthy_one_at_equal_cost_and_speed() -> None:
    names = ["failing", "healthy"]
    scores = factor_scores([fig(100, success=0.2), fig(100, success=1.0)])
    assert [names[i] for i in rank(names, scores, BALANCED, BALANCED)] == ["healthy", "failing"]


def test_ties_fall_to_the_tie_weights_then_to_the_name() -> None:
    names = ["b", "a", "c"]
    # Same cost; b and c fail sometimes; a and c are slower.
    scores = [
        FactorScores(cost=1.0, quality=0.5, latency=1.0),
        FactorScores(cost=1.0, quality=1.0, latency=0.5),
        FactorScores(cost=1.0, quality=0.5, latency=1.0),
    ]
    cost_only = Weights(cost=1.0, quality=0.0, latency=0.0)
    # All tie on cost; balanced: a = 0.4+0.4+0.1 = 0.9 beats b = c = 0.4+0.2+0.2 = 0.8; b < c.
    assert [names[i] for i in rank(names, scores, cost_only, BALANCED)] == ["a", "b", "c"]
    # A complete tie is ordered by name, whatever the input order.
    same = [FactorScores(cost=1.0, quality=1.0, latency=1.0)] * 3
    assert [names[i] for i in rank(names, same, BALANCED, BALANCED)] == ["a", "b", "c"]


# -- optimization ---------------------------------------------------------------------------


def test_optimize_gives_weights_proportional_to_each_factors_variance() -> None:
    # Worked by hand: a costs 1000 (cost 0.25), always succeeds, 100 ms (latency 1.0);
    # b costs 250 (cost 1.0), succeeds 3 times in 4 (0.75), 400 ms (latency 0.25).
    scores = factor_scores([fig(1000, 1.0, 0.1), fig(250, 0.75, 0.4)])
    result = optimize(scores)
    # cost: mean 0.625, variance 0.375^2 = 0.140625; latency the same;
    # quality: mean 0.875, variance 0.125^2 = 0.015625; total 0.296875.
    assert result.means[Factor.COST] == pytest.approx(0.625)
    assert result.variances[Factor.COST] == pytest.approx(0.140625)
    assert result.variances[Factor.QUALITY] == pytest.approx(0.015625)
    assert result.variances[Factor.LATENCY] == pytest.approx(0.140625)
    assert result.weights is not None
    assert result.weights.cost == pytest.approx(9 / 19)
    assert result.weights.quality == pytest.approx(1 / 19)
    assert result.weights.latency == pytest.approx(9 / 19)
    assert weight_problems(result.weights) == []


def test_zero_variance_learns_nothing() -> None:
    same = [FactorScores(cost=0.5, quality=0.9, latency=0.5)] * 3
    result = optimize(same)
    assert result.weights is None
    assert all(v == 0.0 for v in result.variances.values())
    assert optimize([FactorScores(cost=1.0, quality=1.0, latency=1.0)]).weights is None


def test_a_factor_that_does_not_vary_gets_no_weight() -> None:
    scores = [
        FactorScores(cost=1.0, quality=1.0, latency=0.5),
        FactorScores(cost=0.5, quality=1.0, latency=0.5),
    ]
    w = optimize(scores).weights
    assert w == Weights(cost=1.0, quality=0.0, latency=0.0)


# -- weights --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "where"),
    [
        (Weights(cost=math.nan, quality=0.5, latency=0.5), "cost"),
        (Weights(cost=-0.1, quality=0.6, latency=0.5), "cost"),
        (Weights(cost=0.0, quality=1.5, latency=-0.5), "quality"),
        (Weights(cost=0.0, quality=0.0, latency=math.inf), "latency"),
        (Weights(cost=0.3, quality=0.3, latency=0.3), "sum"),
        (Weights(cost=0.5, quality=0.5, latency=0.5), "sum"),
    ],
)
def test_bad_weights_are_named(weights: Weights, where: str) -> None:
    problems = weight_problems(weights)
    assert problems and problems[0][0] == where


def test_weights_may_miss_one_by_the_tolerance() -> None:
    assert weight_problems(Weights(cost=0.5, quality=0.5, latency=5e-7)) == []
    assert weight_problems(Weights(cost=0.5, quality=0.5, latency=2e-6)) != []
    assert weight_problems(Weights(cost=1.0, quality=0.0, latency=0.0)) == []


def test_stored_weights_are_used_only_when_they_are_the_three_valid_ones() -> None:
    good = {"cost": 0.2, "quality": 0.3, "latency": 0.5}
    assert Weights.from_mapping(good) == Weights(cost=0.2, quality=0.3, latency=0.5)
    assert Weights.from_mapping({**good, "reliability": 0.0}) is None
    assert Weights.from_mapping({"cost": 1.0, "quality": 0.0}) is None
    assert Weights.from_mapping({"cost": 0.9, "quality": 0.9, "latency": 0.0}) is None
