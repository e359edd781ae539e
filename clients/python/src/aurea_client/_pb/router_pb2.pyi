import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SelectionPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SELECTION_POLICY_UNSPECIFIED: _ClassVar[SelectionPolicy]
    SELECTION_POLICY_COST: _ClassVar[SelectionPolicy]
    SELECTION_POLICY_QUALITY: _ClassVar[SelectionPolicy]
    SELECTION_POLICY_LATENCY: _ClassVar[SelectionPolicy]
    SELECTION_POLICY_BALANCED: _ClassVar[SelectionPolicy]

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_CHAT: _ClassVar[ModelKind]
    MODEL_KIND_EMBEDDING: _ClassVar[ModelKind]

class RoutingFactor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTING_FACTOR_UNSPECIFIED: _ClassVar[RoutingFactor]
    ROUTING_FACTOR_COST: _ClassVar[RoutingFactor]
    ROUTING_FACTOR_QUALITY: _ClassVar[RoutingFactor]
    ROUTING_FACTOR_LATENCY: _ClassVar[RoutingFactor]
SELECTION_POLICY_UNSPECIFIED: SelectionPolicy
SELECTION_POLICY_COST: SelectionPolicy
SELECTION_POLICY_QUALITY: SelectionPolicy
SELECTION_POLICY_LATENCY: SelectionPolicy
SELECTION_POLICY_BALANCED: SelectionPolicy
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_CHAT: ModelKind
MODEL_KIND_EMBEDDING: ModelKind
ROUTING_FACTOR_UNSPECIFIED: RoutingFactor
ROUTING_FACTOR_COST: RoutingFactor
ROUTING_FACTOR_QUALITY: RoutingFactor
ROUTING_FACTOR_LATENCY: RoutingFactor

class RoutingWeights(_message.Message):
    __slots__ = ("cost_weight", "quality_weight", "latency_weight")
    COST_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    cost_weight: float
    quality_weight: float
    latency_weight: float
    def __init__(self, cost_weight: _Optional[float] = ..., quality_weight: _Optional[float] = ..., latency_weight: _Optional[float] = ...) -> None: ...

class FactorScores(_message.Message):
    __slots__ = ("cost", "quality", "latency")
    COST_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    cost: float
    quality: float
    latency: float
    def __init__(self, cost: _Optional[float] = ..., quality: _Optional[float] = ..., latency: _Optional[float] = ...) -> None: ...

class ScoredModel(_message.Message):
    __slots__ = ("model", "provider", "score", "factors", "live", "available")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    score: float
    factors: FactorScores
    live: bool
    available: bool
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., score: _Optional[float] = ..., factors: _Optional[_Union[FactorScores, _Mapping]] = ..., live: _Optional[bool] = ..., available: _Optional[bool] = ...) -> None: ...

class SelectModelRequest(_message.Message):
    __slots__ = ("target", "policy", "kind", "max_alternatives")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    target: str
    policy: SelectionPolicy
    kind: ModelKind
    max_alternatives: int
    def __init__(self, target: _Optional[str] = ..., policy: _Optional[_Union[SelectionPolicy, str]] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., max_alternatives: _Optional[int] = ...) -> None: ...

class SelectModelResponse(_message.Message):
    __slots__ = ("model", "provider", "score", "factors", "weights", "alternatives", "reason", "policy", "live", "available")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    score: float
    factors: FactorScores
    weights: RoutingWeights
    alternatives: _containers.RepeatedCompositeFieldContainer[ScoredModel]
    reason: str
    policy: SelectionPolicy
    live: bool
    available: bool
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., score: _Optional[float] = ..., factors: _Optional[_Union[FactorScores, _Mapping]] = ..., weights: _Optional[_Union[RoutingWeights, _Mapping]] = ..., alternatives: _Optional[_Iterable[_Union[ScoredModel, _Mapping]]] = ..., reason: _Optional[str] = ..., policy: _Optional[_Union[SelectionPolicy, str]] = ..., live: _Optional[bool] = ..., available: _Optional[bool] = ...) -> None: ...

class RecordOutcomeRequest(_message.Message):
    __slots__ = ("model", "success", "latency_ms", "cost_nanos", "ttft_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    success: bool
    latency_ms: float
    cost_nanos: int
    ttft_ms: float
    def __init__(self, model: _Optional[str] = ..., success: _Optional[bool] = ..., latency_ms: _Optional[float] = ..., cost_nanos: _Optional[int] = ..., ttft_ms: _Optional[float] = ...) -> None: ...

class RecordOutcomeResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: ModelStats
    def __init__(self, stats: _Optional[_Union[ModelStats, _Mapping]] = ...) -> None: ...

class ModelStats(_message.Message):
    __slots__ = ("model", "provider", "calls", "successes", "success_rate", "avg_latency_ms", "avg_cost_nanos", "recent_success_rate", "recent_ttft_ms", "recent_samples", "avg_ttft_ms", "p50_ttft_ms", "p95_ttft_ms", "ttft_samples", "score", "factors", "live", "available", "last_outcome_time")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    AVG_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    RECENT_SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    RECENT_TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    RECENT_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    AVG_TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    P50_TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    P95_TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LAST_OUTCOME_TIME_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    calls: int
    successes: int
    success_rate: float
    avg_latency_ms: float
    avg_cost_nanos: int
    recent_success_rate: float
    recent_ttft_ms: float
    recent_samples: float
    avg_ttft_ms: float
    p50_ttft_ms: float
    p95_ttft_ms: float
    ttft_samples: int
    score: float
    factors: FactorScores
    live: bool
    available: bool
    last_outcome_time: _timestamp_pb2.Timestamp
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., calls: _Optional[int] = ..., successes: _Optional[int] = ..., success_rate: _Optional[float] = ..., avg_latency_ms: _Optional[float] = ..., avg_cost_nanos: _Optional[int] = ..., recent_success_rate: _Optional[float] = ..., recent_ttft_ms: _Optional[float] = ..., recent_samples: _Optional[float] = ..., avg_ttft_ms: _Optional[float] = ..., p50_ttft_ms: _Optional[float] = ..., p95_ttft_ms: _Optional[float] = ..., ttft_samples: _Optional[int] = ..., score: _Optional[float] = ..., factors: _Optional[_Union[FactorScores, _Mapping]] = ..., live: _Optional[bool] = ..., available: _Optional[bool] = ..., last_outcome_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListModelStatsRequest(_message.Message):
    __slots__ = ("models", "page_size", "page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    def __init__(self, models: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelStatsResponse(_message.Message):
    __slots__ = ("stats", "next_page_token")
    STATS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    stats: _containers.RepeatedCompositeFieldContainer[ModelStats]
    next_page_token: str
    def __init__(self, stats: _Optional[_Iterable[_Union[ModelStats, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class OptimizeWeightsRequest(_message.Message):
    __slots__ = ("validate_only",)
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    validate_only: bool
    def __init__(self, validate_only: _Optional[bool] = ...) -> None: ...

class FactorSpread(_message.Message):
    __slots__ = ("factor", "mean", "variance")
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FIELD_NUMBER: _ClassVar[int]
    factor: RoutingFactor
    mean: float
    variance: float
    def __init__(self, factor: _Optional[_Union[RoutingFactor, str]] = ..., mean: _Optional[float] = ..., variance: _Optional[float] = ...) -> None: ...

class OptimizeWeightsResponse(_message.Message):
    __slots__ = ("weights", "previous_weights", "spreads", "models", "outcomes_considered", "applied", "reason")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SPREADS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_CONSIDERED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    weights: RoutingWeights
    previous_weights: RoutingWeights
    spreads: _containers.RepeatedCompositeFieldContainer[FactorSpread]
    models: _containers.RepeatedScalarFieldContainer[str]
    outcomes_considered: int
    applied: bool
    reason: str
    def __init__(self, weights: _Optional[_Union[RoutingWeights, _Mapping]] = ..., previous_weights: _Optional[_Union[RoutingWeights, _Mapping]] = ..., spreads: _Optional[_Iterable[_Union[FactorSpread, _Mapping]]] = ..., models: _Optional[_Iterable[str]] = ..., outcomes_considered: _Optional[int] = ..., applied: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class GetWeightsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetWeightsResponse(_message.Message):
    __slots__ = ("weights", "defaults")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    weights: RoutingWeights
    defaults: bool
    def __init__(self, weights: _Optional[_Union[RoutingWeights, _Mapping]] = ..., defaults: _Optional[bool] = ...) -> None: ...

class SetWeightsRequest(_message.Message):
    __slots__ = ("weights",)
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weights: RoutingWeights
    def __init__(self, weights: _Optional[_Union[RoutingWeights, _Mapping]] = ...) -> None: ...

class SetWeightsResponse(_message.Message):
    __slots__ = ("weights", "previous_weights")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weights: RoutingWeights
    previous_weights: RoutingWeights
    def __init__(self, weights: _Optional[_Union[RoutingWeights, _Mapping]] = ..., previous_weights: _Optional[_Union[RoutingWeights, _Mapping]] = ...) -> None: ...
