"""RouterService: selection from the router's published table, and outcomes, stats and weights
through the Router actor. Validation collects every bad field at once; a bad request changes
nothing."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping

import grpc
from google.protobuf import timestamp_pb2

from aurea.actors.router import (
    GetWeights,
    ListStats,
    ModelReport,
    OptimizeWeights,
    RecordOutcome,
    RouterMsg,
    SetWeights,
)
from aurea.errors import FieldViolation, InvalidRequest
from aurea.routing import Factor, FactorScores, RouterView, Scored, Weights, weight_problems
from aurea.runtime import ActorRef
from aurea.stores import Outcome
from aurea.types import Policy
from aurea.v1 import router_pb2 as pb
from aurea.v1 import router_pb2_grpc

MAX_TARGET = 256
MAX_ALTERNATIVES = 20
MAX_LIST_MODELS = 100
DEFAULT_PAGE = 100
MAX_PAGE = 1000
_INT64_MAX = 2**63 - 1
# One outcome's bounds: a day, and a million USD. Beyond them a value is a caller's mistake, and
# the store's running sums must stay finite and inside int64.
MAX_LATENCY_MS = 86_400_000
MAX_COST_NANOS = 10**15
_TOKEN_PREFIX = b"after:"

_POLICIES = {
    pb.SELECTION_POLICY_COST: Policy.COST,
    pb.SELECTION_POLICY_QUALITY: Policy.QUALITY,
    pb.SELECTION_POLICY_LATENCY: Policy.LATENCY,
    pb.SELECTION_POLICY_BALANCED: Policy.BALANCED,
}
_POLICY_PB = {v: k for k, v in _POLICIES.items()}
_KINDS = {
    pb.MODEL_KIND_UNSPECIFIED: "chat",
    pb.MODEL_KIND_CHAT: "chat",
    pb.MODEL_KIND_EMBEDDING: "embedding",
}
_FACTOR_PB = {
    Factor.COST: pb.ROUTING_FACTOR_COST,
    Factor.QUALITY: pb.ROUTING_FACTOR_QUALITY,
    Factor.LATENCY: pb.ROUTING_FACTOR_LATENCY,
}
_WEIGHT_FIELDS = {"cost": "cost_weight", "quality": "quality_weight", "latency": "latency_weight"}


def _raise(bad: list[FieldViolation]) -> None:
    if bad:
        summary = "; ".join(f"{v.field}: {v.description}" for v in bad)
        raise InvalidRequest(f"invalid request: {summary}", bad)


def _ts(unix_s: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(unix_s * 1e9))
    return t


def weights_pb(w: Weights) -> pb.RoutingWeights:
    return pb.RoutingWeights(cost_weight=w.cost, quality_weight=w.quality, latency_weight=w.latency)


def _factors_pb(f: FactorScores) -> pb.FactorScores:
    return pb.FactorScores(cost=f.cost, quality=f.quality, latency=f.latency)


def _scored_pb(s: Scored) -> pb.ScoredModel:
    return pb.ScoredModel(
        model=s.model.name,
        provider=s.model.provider,
        score=s.score,
        factors=_factors_pb(s.factors),
        live=s.live,
        available=s.available,
    )


def stats_pb(r: ModelReport) -> pb.ModelStats:
    c = r.calls
    out = pb.ModelStats(
        model=r.spec.name,
        provider=r.spec.provider,
        calls=c.count,
        successes=c.successes,
        success_rate=c.success_rate,
        avg_latency_ms=c.avg_latency_s * 1e3,
        avg_cost_nanos=min(round(c.avg_cost_nanos), _INT64_MAX),
        recent_success_rate=c.recent_success_rate,
        recent_ttft_ms=r.first.recent_latency_s * 1e3 if r.first is not None else 0.0,
        recent_samples=r.recent_samples,
        avg_ttft_ms=c.avg_ttft_s * 1e3,
        p50_ttft_ms=(r.ttft_p50_s or 0.0) * 1e3,
        p95_ttft_ms=(r.ttft_p95_s or 0.0) * 1e3,
        ttft_samples=r.ttft_window,
    )
    if r.scored is not None:
        out.score = r.scored.score
        out.factors.CopyFrom(_factors_pb(r.scored.factors))
        out.live = r.scored.live
        out.available = r.scored.available
    if c.count:
        out.last_outcome_time.CopyFrom(_ts(c.last_updated))
    return out


def _weights_in(msg: pb.SetWeightsRequest) -> Weights:
    if not msg.HasField("weights"):
        _raise([FieldViolation("weights", "is required")])
    p = msg.weights
    w = Weights(cost=p.cost_weight, quality=p.quality_weight, latency=p.latency_weight)
    bad = [
        FieldViolation("weights" if f == "sum" else f"weights.{_WEIGHT_FIELDS[f]}", d)
        for f, d in weight_problems(w)
    ]
    _raise(bad)
    return w


def _outcome_in(req: pb.RecordOutcomeRequest, catalog: Mapping[str, object]) -> RecordOutcome:
    bad: list[FieldViolation] = []
    if not req.model:
        bad.append(FieldViolation("model", "is required"))
    elif len(req.model) > MAX_TARGET or req.model not in catalog:
        bad.append(FieldViolation("model", "is not in the model catalog"))
    latency_ok = math.isfinite(req.latency_ms) and 0 <= req.latency_ms <= MAX_LATENCY_MS
    if not latency_ok:
        bad.append(FieldViolation("latency_ms", f"must be a number in [0, {MAX_LATENCY_MS}]"))
    if not 0 <= req.cost_nanos <= MAX_COST_NANOS:
        bad.append(FieldViolation("cost_nanos", f"must be in [0, {MAX_COST_NANOS}]"))
    ttft_s: float | None = None
    if req.HasField("ttft_ms"):
        t = req.ttft_ms
        if not (math.isfinite(t) and t >= 0):
            bad.append(FieldViolation("ttft_ms", "must be a finite number >= 0"))
        elif latency_ok and t > req.latency_ms:
            bad.append(FieldViolation("ttft_ms", "must not exceed latency_ms"))
        else:
            ttft_s = t / 1e3
    _raise(bad)
    latency_s = req.latency_ms / 1e3
    outcome = Outcome(
        success=req.success,
        latency_s=latency_s,
        cost_nanos=req.cost_nanos,
        ttft_s=ttft_s if req.success else None,
    )
    first = (ttft_s if ttft_s is not None else latency_s) if req.success else None
    return RecordOutcome(model=req.model, outcome=outcome, first_token_s=first)


def _page_after(token: str) -> str:
    if not token:
        return ""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raw = b""
    if not raw.startswith(_TOKEN_PREFIX):
        _raise([FieldViolation("page_token", "is not a token this RPC returned")])
    return raw[len(_TOKEN_PREFIX) :].decode("utf-8", "replace")


def _page_token(last: str) -> str:
    return base64.urlsafe_b64encode(_TOKEN_PREFIX + last.encode()).decode("ascii")


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(
        self, *, view: RouterView, router: ActorRef[RouterMsg], ask_timeout_s: float
    ) -> None:
        self._view = view
        self._router = router
        self._timeout = ask_timeout_s

    async def SelectModel(
        self, request: pb.SelectModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.SelectModelResponse:
        bad: list[FieldViolation] = []
        if len(request.target) > MAX_TARGET:
            bad.append(FieldViolation("target", f"at most {MAX_TARGET} characters"))
        policy: Policy | None = None
        if request.policy:
            policy = _POLICIES.get(request.policy)
            if policy is None:
                bad.append(FieldViolation("policy", "is not a known SelectionPolicy value"))
        kind = _KINDS.get(request.kind)
        if kind is None:
            bad.append(FieldViolation("kind", "is not a known ModelKind value"))
        if not 0 <= request.max_alternatives <= MAX_ALTERNATIVES:
            bad.append(FieldViolation("max_alternatives", f"must be in [0, {MAX_ALTERNATIVES}]"))
        _raise(bad)
        assert kind is not None
        # The published table answers: no mailbox hop, the same ranking a call would get.
        sel = self._view.table.select(request.target, kind, policy)
        best, rest = sel.ranked[0], sel.ranked[1:]
        limit = request.max_alternatives or MAX_ALTERNATIVES
        return pb.SelectModelResponse(
            model=best.model.name,
            provider=best.model.provider,
            score=best.score,
            factors=_factors_pb(best.factors),
            weights=weights_pb(sel.weights),
            alternatives=[_scored_pb(s) for s in rest[:limit]],
            reason=sel.reason,
            policy=_POLICY_PB[sel.policy],
            live=best.live,
            available=best.available,
        )

    async def RecordOutcome(
        self, request: pb.RecordOutcomeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordOutcomeResponse:
        msg = _outcome_in(request, self._view.table.models)
        report = await self._router.ask(msg, timeout_s=self._timeout)
        return pb.RecordOutcomeResponse(stats=stats_pb(report))

    async def ListModelStats(
        self, request: pb.ListModelStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelStatsResponse:
        bad: list[FieldViolation] = []
        if request.page_size < 0:
            bad.append(FieldViolation("page_size", "must be >= 0"))
        if len(request.models) > MAX_LIST_MODELS:
            bad.append(FieldViolation("models", f"at most {MAX_LIST_MODELS} entries"))
        _raise(bad)
        after = _page_after(request.page_token)
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        reports = await self._router.ask(
            ListStats(models=tuple(sorted(set(request.models)))), timeout_s=self._timeout
        )
        page = [r for r in reports if r.spec.name > after][:size]
        more = bool(page) and page[-1].spec.name != reports[-1].spec.name
        return pb.ListModelStatsResponse(
            stats=[stats_pb(r) for r in page],
            next_page_token=_page_token(page[-1].spec.name) if more else "",
        )

    async def OptimizeWeights(
        self, request: pb.OptimizeWeightsRequest, context: grpc.aio.ServicerContext
    ) -> pb.OptimizeWeightsResponse:
        result = await self._router.ask(
            OptimizeWeights(apply=not request.validate_only), timeout_s=self._timeout
        )
        o = result.result
        return pb.OptimizeWeightsResponse(
            weights=weights_pb(result.weights),
            previous_weights=weights_pb(result.previous),
            spreads=[
                pb.FactorSpread(factor=_FACTOR_PB[f], mean=o.means[f], variance=o.variances[f])
                for f in Factor
            ],
            models=list(result.models),
            outcomes_considered=result.outcomes,
            applied=result.applied,
            reason=result.reason,
        )

    async def GetWeights(
        self, request: pb.GetWeightsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetWeightsResponse:
        view = await self._router.ask(GetWeights(), timeout_s=self._timeout)
        return pb.GetWeightsResponse(weights=weights_pb(view.weights), defaults=view.defaults)

    async def SetWeights(
        self, request: pb.SetWeightsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetWeightsResponse:
        weights = _weights_in(request)
        change = await self._router.ask(SetWeights(weights=weights), timeout_s=self._timeout)
        return pb.SetWeightsResponse(
            weights=weights_pb(change.weights), previous_weights=weights_pb(change.previous)
        )
