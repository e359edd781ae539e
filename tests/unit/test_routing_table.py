"""Routing tables: targets (default, auto, route groups, explicit), policies, health, selection,
and the figures a model is scored on (live figures vs catalog priors, decay)."""

from __future__ import annotations

from typing import Any

import pytest

from aurea import errors as e
from aurea.config import ModelSpec, Settings, build_settings
from aurea.routing import (
    AUTO,
    Figures,
    RoutingTable,
    Weights,
    effective_weight,
    figures_for,
    first_token_key,
    split_rows,
)
from aurea.routing._figures import reference_cost_nanos
from aurea.stores import ModelStats
from aurea.stores.router_stats import Outcome, fold
from aurea.types import Policy

HALF_LIFE = 60.0


def settings(**routing: Any) -> Settings:
    return build_settings(
        {
            "providers": {"p": {"kind": "simulated"}},
            "models": {
                # cheap: 1/4 of fast's price; fast: quick; both quality 0.8
                "cheap": {"provider": "p", "input_usd_per_mtok": "1", "quality": 0.8},
                "fast": {"provider": "p", "input_usd_per_mtok": "4", "quality": 0.8},
                "emb": {"provider": "p", "kind": "embedding", "input_usd_per_mtok": "0.1"},
            },
            "routing": {
                "default_model": "cheap",
                "default_embedding_model": "emb",
                "allowed_models": ["cheap", "fast", "emb"],  # not the default catalog's
                **routing,
            },
        }
    )


def live(cost: float, success: float, latency: float) -> Figures:
    return Figures(cost_nanos=cost, success_rate=success, latency_s=latency, live=True)


def table(
    s: Settings | None = None,
    figures: dict[str, Figures] | None = None,
    weights: Weights | None = None,
    down: frozenset[str] = frozenset(),
) -> RoutingTable:
    s = s or settings()
    return RoutingTable(
        models=s.models,
        settings=s.routing,
        weights=weights,
        figures=figures,
        health=(lambda m: m.name in down) if down else None,
    )


def names(cands: Any) -> list[str]:
    return [c.model.name for c in cands]


# -- targets ----------------------------------------------------------------------------------

FIGS = {"cheap": live(100, 1.0, 0.4), "fast": live(400, 1.0, 0.1)}
LATENCY = Weights(cost=0.0, quality=0.0, latency=1.0)
COST = Weights(cost=1.0, quality=0.0, latency=0.0)


def test_empty_model_is_the_default_and_auto_is_the_best_score() -> None:
    t = table(figures=FIGS, weights=LATENCY)
    assert names(t.route("")) == ["cheap"]
    assert t.route("")[0].reason == "server default model"
    assert names(t.route(AUTO)) == ["fast", "cheap"]
    assert names(table(figures=FIGS, weights=COST).route(AUTO)) == ["cheap", "fast"]
    assert names(t.route(AUTO, "embedding")) == ["emb"]


def test_a_policy_overrides_the_weights_and_its_ties_fall_to_them() -> None:
    t = table(figures=FIGS, weights=LATENCY)
    assert names(t.route("", policy=Policy.COST)) == ["cheap", "fast"]
    assert names(t.route(AUTO, policy=Policy.LATENCY)) == ["fast", "cheap"]
    # Quality ties (both 1.0): the balanced weights (latency here) decide.
    assert names(t.route(AUTO, policy=Policy.QUALITY)) == ["fast", "cheap"]


def test_the_reason_says_why_with_score_and_weights() -> None:
    reason = table(figures=FIGS, weights=LATENCY).route(AUTO)[0].reason
    assert reason.startswith("best of 2 by balanced policy: score 1.000")
    assert "latency 1.00x1.00" in reason and "cost 0.25x0.00" in reason
    assert "catalog priors" in table().route(AUTO)[0].reason
    assert table(figures=FIGS).route(AUTO)[1].reason.startswith("#2 of 2 by balanced policy")


def test_route_groups_keep_their_order_and_the_requests_fallbacks_follow() -> None:
    s = settings(groups={"pair": ["fast", "cheap"]})
    t = table(s, figures=FIGS, weights=COST)
    assert names(t.route("pair")) == ["fast", "cheap"]
    assert "route group 'pair', #1 of 2" in t.route("pair")[0].reason
    assert names(t.route("fast", fallbacks=("fast", "cheap"))) == ["fast", "cheap"]
    with pytest.raises(e.InvalidRequest):
        t.route("pair", "embedding")


def test_a_group_skips_denied_models() -> None:
    s = settings(groups={"pair": ["fast", "cheap"]}, denied_models=["fast"])
    assert names(table(s).route("pair")) == ["cheap"]
    assert names(table(s).route(AUTO)) == ["cheap"]


def test_explicit_models_and_their_errors() -> None:
    t = table()
    assert names(t.route("fast")) == ["fast"]
    with pytest.raises(e.UnknownModel):
        t.route("nope")
    with pytest.raises(e.InvalidRequest):
        t.route("emb")
    with pytest.raises(e.UnknownModel) as info:
        t.route("fast", fallbacks=("ghost",))
    assert info.value.field == "fallback_models[0]"


def test_models_whose_breaker_is_open_go_last_but_an_explicit_one_stays() -> None:
    t = table(figures=FIGS, weights=LATENCY, down=frozenset({"fast"}))
    assert names(t.route(AUTO)) == ["cheap", "fast"]
    assert names(t.route("fast")) == ["fast"]
    everything_down = table(figures=FIGS, weights=LATENCY, down=frozenset({"fast", "cheap"}))
    assert names(everything_down.route(AUTO)) == ["fast", "cheap"]  # order kept: try anyway


def test_a_healthy_route_allocates_nothing_new() -> None:
    t = table(figures=FIGS, down=frozenset({"someone-else"}))
    assert t.route(AUTO) is t.route(AUTO)


# -- select -----------------------------------------------------------------------------------


def test_select_ranks_with_scores_and_weights() -> None:
    sel = table(figures=FIGS, weights=LATENCY).select("")
    assert [s.model.name for s in sel.ranked] == ["fast", "cheap"]
    assert sel.weights == LATENCY and sel.policy is Policy.BALANCED
    assert sel.ranked[0].score == pytest.approx(1.0)
    assert sel.ranked[1].factors.latency == pytest.approx(0.25)
    cost = table(figures=FIGS, weights=LATENCY).select(AUTO, policy=Policy.COST)
    assert cost.weights == COST and cost.ranked[0].model.name == "cheap"


def test_select_marks_open_models_unavailable_and_puts_them_last() -> None:
    sel = table(figures=FIGS, weights=LATENCY, down=frozenset({"fast"})).select(AUTO)
    assert [(s.model.name, s.available) for s in sel.ranked] == [("cheap", True), ("fast", False)]


def test_select_an_explicit_model_or_a_group() -> None:
    s = settings(groups={"pair": ["cheap", "fast"]})
    t = table(s, figures=FIGS, weights=LATENCY)
    assert [m.model.name for m in t.select("cheap").ranked] == ["cheap", "fast"]
    assert [m.model.name for m in t.select("pair").ranked] == ["cheap", "fast"]
    with pytest.raises(e.UnknownModel) as info:
        t.select("ghost")
    assert info.value.field == "target"
    with pytest.raises(e.ModelDenied):
        table(settings(denied_models=["fast"])).select("fast")


# -- figures ------------------------------------------------------------------------------------


def rows(model: str, outcomes: list[Outcome], t0: float = 1000.0) -> ModelStats:
    s: ModelStats | None = None
    for i, o in enumerate(outcomes):
        s = fold(s, model, o, t0 + i, HALF_LIFE)
    assert s is not None
    return s


def specs(s: Settings, *names: str) -> list[ModelSpec]:
    return [s.models[n] for n in names]


def test_priors_until_min_samples_then_live_figures() -> None:
    s = settings()
    ok = Outcome(success=True, latency_s=0.5, cost_nanos=10)
    two = {"cheap": rows("cheap", [ok, ok])}
    [prior] = figures_for(
        specs(s, "cheap"), two, {}, now=1002.0, half_life_s=HALF_LIFE, min_samples=3
    )
    assert not prior.live and prior.success_rate == 0.8 and prior.latency_s is None
    three = {"cheap": rows("cheap", [ok, ok, ok])}
    [measured] = figures_for(
        specs(s, "cheap"), three, {}, now=1003.0, half_life_s=HALF_LIFE, min_samples=2.5
    )
    assert measured.live and measured.success_rate == pytest.approx(1.0)
    assert measured.cost_nanos == 10


def test_figures_decay_back_to_the_priors_when_a_model_is_left_alone() -> None:
    s = settings()
    failures = {"cheap": rows("cheap", [Outcome(success=False, latency_s=0.1)] * 4)}
    kw: dict[str, Any] = {"half_life_s": HALF_LIFE, "min_samples": 3}
    [now] = figures_for(specs(s, "cheap"), failures, {}, now=1004.0, **kw)
    assert now.live and now.success_rate == 0.0
    # Two half-lives later the four outcomes are worth one: the prior is back.
    later = 1003.0 + 2 * HALF_LIFE
    assert 0.9 < effective_weight(failures["cheap"], later, HALF_LIFE) <= 1.0
    [then] = figures_for(specs(s, "cheap"), failures, {}, now=later, **kw)
    assert not then.live and then.success_rate == 0.8


def test_latency_comes_from_the_first_token_series() -> None:
    s = settings()
    first = {"fast": rows(first_token_key("fast"), [Outcome(success=True, latency_s=0.2)] * 3)}
    calls, firsts = split_rows(
        [first["fast"], rows("fast", [Outcome(success=True, latency_s=2.0)] * 3)]
    )
    assert set(calls) == {"fast"} and set(firsts) == {"fast"}
    [f] = figures_for(
        specs(s, "fast"), calls, firsts, now=1003.0, half_life_s=HALF_LIFE, min_samples=2.5
    )
    assert f.latency_s == pytest.approx(0.2)  # not the 2 s total latency


def test_a_failing_model_does_not_look_cheap() -> None:
    s = settings()
    answered = Outcome(success=True, latency_s=0.1, cost_nanos=100)
    failed = Outcome(success=False, latency_s=0.01)  # failures cost (next to) nothing
    calls = {
        "cheap": rows("cheap", [answered] + [failed] * 9),
        "fast": rows("fast", [answered] * 10),
    }
    cheap, fast = figures_for(
        specs(s, "cheap", "fast"), calls, {}, now=1010.0, half_life_s=HALF_LIFE, min_samples=3
    )
    assert cheap.cost_nanos == fast.cost_nanos == 100  # per answer, not 10 per outcome
    assert cheap.success_rate < 0.2


def test_a_prior_cost_is_scaled_like_the_measured_models() -> None:
    s = settings()
    # fast measured at twice its reference call; cheap (no data) expected at twice its own.
    measured = reference_cost_nanos(s.models["fast"]) * 2
    ok = Outcome(success=True, latency_s=0.1, cost_nanos=round(measured))
    calls = {"fast": rows("fast", [ok] * 3)}
    cheap, fast = figures_for(
        specs(s, "cheap", "fast"), calls, {}, now=1003.0, half_life_s=HALF_LIFE, min_samples=2.5
    )
    assert fast.live and not cheap.live
    assert cheap.cost_nanos == pytest.approx(reference_cost_nanos(s.models["cheap"]) * 2, rel=1e-6)
    assert cheap.cost_nanos / fast.cost_nanos == pytest.approx(0.25, rel=1e-6)


# -- the [routing] keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routing", "key"),
    [
        ({"groups": {"g": ["ghost"]}}, "routing.groups.g"),
        ({"groups": {"g": []}}, "routing.groups.g"),
        ({"groups": {"g": ["cheap", "cheap"]}}, "routing.groups.g"),
        ({"groups": {"g": ["cheap", "emb"]}}, "routing.groups.g"),
        ({"groups": {"fast": ["cheap"]}}, "routing.groups.fast"),
        ({"groups": {"auto": ["cheap"]}}, "routing.groups.auto"),
        ({"groups": ["cheap"]}, "routing.groups"),
        ({"cost_weight": 0.5}, "routing.cost_weight"),
        ({"min_samples": 0}, "routing.min_samples"),
        ({"stats_half_life_s": 0}, "routing.stats_half_life_s"),
        ({"stats_store": "redis"}, "routing.stats_store"),
    ],
)
def test_bad_routing_keys_are_named(routing: dict[str, Any], key: str) -> None:
    with pytest.raises(e.AureaError) as info:
        settings(**routing)
    assert getattr(info.value, "key", None) == key, info.value


def test_route_groups_come_from_the_file_or_as_json_from_the_environment() -> None:
    assert settings(groups={"pair": ["fast", "cheap"]}).routing.groups == (
        ("pair", ("fast", "cheap")),
    )
    s = build_settings(
        {
            "providers": {"p": {"kind": "simulated"}},
            "models": {"x": {"provider": "p"}, "y": {"provider": "p"}},
        },
        {"AUREA_ROUTING_GROUPS": '{"xy": ["x", "y"]}'},
    )
    assert s.routing.groups == (("xy", ("x", "y")),)


def test_a_model_named_auto_is_refused() -> None:
    with pytest.raises(e.AureaError) as info:
        build_settings({"models": {"auto": {"provider": "simulated"}}})
    assert getattr(info.value, "key", None) == "models.auto"
