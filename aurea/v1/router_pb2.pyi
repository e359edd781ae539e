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

class RoutingFactor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTING_FACTOR_UNSPECIFIED: _ClassVar[RoutingFactor]
    ROUTING_FACTOR_COST: _ClassVar[RoutingFactor]
    ROUTING_FACTOR_QUALITY: _ClassVar[RoutingFactor]
    ROUTING_FACTOR_LATENCY: _ClassVar[RoutingFactor]
    ROUTING_FACTOR_RELIABILITY: _ClassVar[RoutingFactor]
SELECTION_POLICY_UNSPECIFIED: SelectionPolicy
SELECTION_POLICY_COST: SelectionPolicy
SELECTION_POLICY_QUALITY: SelectionPolicy
SELECTION_POLICY_LATENCY: SelectionPolicy
SELECTION_POLICY_BALANCED: SelectionPolicy
ROUTING_FACTOR_UNSPECIFIED: RoutingFactor
ROUTING_FACTOR_COST: RoutingFactor
ROUTING_FACTOR_QUALITY: RoutingFactor
ROUTING_FACTOR_LATENCY: RoutingFactor
ROUTING_FACTOR_RELIABILITY: RoutingFactor

class RoutingWeights(_message.Message):
    __slots__ = ("cost_weight", "quality_weight", "latency_weight", "reliability_weight")
    COST_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    RELIABILITY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    cost_weight: float
    quality_weight: float
    latency_weight: float
    reliability_weight: float
    def __init__(self, cost_weight: _Optional[float] = ..., quality_weight: _Optional[float] = ..., latency_weight: _Optional[float] = ..., reliability_weight: _Optional[float] = ...) -> None: ...

class ScoredModel(_message.Message):
    __slots__ = ("model", "provider", "score", "estimated_cost_nanos")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    score: float
    estimated_cost_nanos: int
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., score: _Optional[float] = ..., estimated_cost_nanos: _Optional[int] = ...) -> None: ...

class SelectModelRequest(_message.Message):
    __slots__ = ("prompt", "task_description", "policy", "required_capabilities", "max_cost_nanos", "expected_output_tokens", "max_alternatives")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    TASK_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    task_description: str
    policy: SelectionPolicy
    required_capabilities: _containers.RepeatedScalarFieldContainer[str]
    max_cost_nanos: int
    expected_output_tokens: int
    max_alternatives: int
    def __init__(self, prompt: _Optional[str] = ..., task_description: _Optional[str] = ..., policy: _Optional[_Union[SelectionPolicy, str]] = ..., required_capabilities: _Optional[_Iterable[str]] = ..., max_cost_nanos: _Optional[int] = ..., expected_output_tokens: _Optional[int] = ..., max_alternatives: _Optional[int] = ...) -> None: ...

class SelectModelResponse(_message.Message):
    __slots__ = ("model", "provider", "score", "estimated_cost_nanos", "alternatives", "reason", "policy")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    score: float
    estimated_cost_nanos: int
    alternatives: _containers.RepeatedCompositeFieldContainer[ScoredModel]
    reason: str
    policy: SelectionPolicy
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., score: _Optional[float] = ..., estimated_cost_nanos: _Optional[int] = ..., alternatives: _Optional[_Iterable[_Union[ScoredModel, _Mapping]]] = ..., reason: _Optional[str] = ..., policy: _Optional[_Union[SelectionPolicy, str]] = ...) -> None: ...

class RecordOutcomeRequest(_message.Message):
    __slots__ = ("model", "success", "latency_ms", "quality_score", "cost_nanos", "input_tokens", "output_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    success: bool
    latency_ms: float
    quality_score: float
    cost_nanos: int
    input_tokens: int
    output_tokens: int
    def __init__(self, model: _Optional[str] = ..., success: _Optional[bool] = ..., latency_ms: _Optional[float] = ..., quality_score: _Optional[float] = ..., cost_nanos: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ...) -> None: ...

class RecordOutcomeResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: ModelStats
    def __init__(self, stats: _Optional[_Union[ModelStats, _Mapping]] = ...) -> None: ...

class ModelStats(_message.Message):
    __slots__ = ("model", "provider", "calls", "successes", "success_rate", "avg_latency_ms", "avg_quality_score", "rated_calls", "avg_cost_nanos", "last_outcome_time")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    AVG_QUALITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    RATED_CALLS_FIELD_NUMBER: _ClassVar[int]
    AVG_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    LAST_OUTCOME_TIME_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    calls: int
    successes: int
    success_rate: float
    avg_latency_ms: float
    avg_quality_score: float
    rated_calls: int
    avg_cost_nanos: int
    last_outcome_time: _timestamp_pb2.Timestamp
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., calls: _Optional[int] = ..., successes: _Optional[int] = ..., success_rate: _Optional[float] = ..., avg_latency_ms: _Optional[float] = ..., avg_quality_score: _Optional[float] = ..., rated_calls: _Optional[int] = ..., avg_cost_nanos: _Optional[int] = ..., last_outcome_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("min_outcomes", "validate_only")
    MIN_OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    min_outcomes: int
    validate_only: bool
    def __init__(self, min_outcomes: _Optional[int] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class WeightChange(_message.Message):
    __slots__ = ("factor", "previous_weight", "new_weight")
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NEW_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    factor: RoutingFactor
    previous_weight: float
    new_weight: float
    def __init__(self, factor: _Optional[_Union[RoutingFactor, str]] = ..., previous_weight: _Optional[float] = ..., new_weight: _Optional[float] = ...) -> None: ...

class OptimizeWeightsResponse(_message.Message):
    __slots__ = ("weights", "previous_weights", "changes", "outcomes_considered", "applied", "reason")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_CONSIDERED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    weights: RoutingWeights
    previous_weights: RoutingWeights
    changes: _containers.RepeatedCompositeFieldContainer[WeightChange]
    outcomes_considered: int
    applied: bool
    reason: str
    def __init__(self, weights: _Optional[_Union[RoutingWeights, _Mapping]] = ..., previous_weights: _Optional[_Union[RoutingWeights, _Mapping]] = ..., changes: _Optional[_Iterable[_Union[WeightChange, _Mapping]]] = ..., outcomes_considered: _Optional[int] = ..., applied: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class GetWeightsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetWeightsResponse(_message.Message):
    __slots__ = ("weights", "update_time")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    weights: RoutingWeights
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, weights: _Optional[_Union[RoutingWeights, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetWeightsRequest(_message.Message):
    __slots__ = ("weights",)
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weights: RoutingWeights
    def __init__(self, weights: _Optional[_Union[RoutingWeights, _Mapping]] = ...) -> None: ...

class SetWeightsResponse(_message.Message):
    __slots__ = ("weights", "previous_weights", "update_time")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    weights: RoutingWeights
    previous_weights: RoutingWeights
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, weights: _Optional[_Union[RoutingWeights, _Mapping]] = ..., previous_weights: _Optional[_Union[RoutingWeights, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
