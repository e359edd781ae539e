import datetime

from aurea.v1 import task_pb2 as _task_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVING_STATUS_UNSPECIFIED: _ClassVar[ServingStatus]
    SERVING_STATUS_SERVING: _ClassVar[ServingStatus]
    SERVING_STATUS_DRAINING: _ClassVar[ServingStatus]

class CircuitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CIRCUIT_STATE_UNSPECIFIED: _ClassVar[CircuitState]
    CIRCUIT_STATE_CLOSED: _ClassVar[CircuitState]
    CIRCUIT_STATE_OPEN: _ClassVar[CircuitState]
    CIRCUIT_STATE_HALF_OPEN: _ClassVar[CircuitState]

class CacheKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_KIND_UNSPECIFIED: _ClassVar[CacheKind]
    CACHE_KIND_LLM: _ClassVar[CacheKind]
    CACHE_KIND_EMBEDDING: _ClassVar[CacheKind]
SERVING_STATUS_UNSPECIFIED: ServingStatus
SERVING_STATUS_SERVING: ServingStatus
SERVING_STATUS_DRAINING: ServingStatus
CIRCUIT_STATE_UNSPECIFIED: CircuitState
CIRCUIT_STATE_CLOSED: CircuitState
CIRCUIT_STATE_OPEN: CircuitState
CIRCUIT_STATE_HALF_OPEN: CircuitState
CACHE_KIND_UNSPECIFIED: CacheKind
CACHE_KIND_LLM: CacheKind
CACHE_KIND_EMBEDDING: CacheKind

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("name", "version", "status", "uptime_ms", "features", "provider_count", "model_count", "start_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_MS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    status: ServingStatus
    uptime_ms: int
    features: _containers.RepeatedScalarFieldContainer[str]
    provider_count: int
    model_count: int
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., status: _Optional[_Union[ServingStatus, str]] = ..., uptime_ms: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ..., provider_count: _Optional[int] = ..., model_count: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSystemMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ActorMetrics(_message.Message):
    __slots__ = ("name", "mailbox_depth", "mailbox_capacity", "restarts", "processed", "avg_handling_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    AVG_HANDLING_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    mailbox_depth: int
    mailbox_capacity: int
    restarts: int
    processed: int
    avg_handling_ms: float
    def __init__(self, name: _Optional[str] = ..., mailbox_depth: _Optional[int] = ..., mailbox_capacity: _Optional[int] = ..., restarts: _Optional[int] = ..., processed: _Optional[int] = ..., avg_handling_ms: _Optional[float] = ...) -> None: ...

class GetSystemMetricsResponse(_message.Message):
    __slots__ = ("cpu_percent", "cpu_time_ms", "memory_rss_bytes", "actors", "host_cpu_percent", "host_memory_total_bytes", "host_memory_available_bytes", "pools")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    HOST_CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    HOST_MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    HOST_MEMORY_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    cpu_time_ms: int
    memory_rss_bytes: int
    actors: _containers.RepeatedCompositeFieldContainer[ActorMetrics]
    host_cpu_percent: float
    host_memory_total_bytes: int
    host_memory_available_bytes: int
    pools: _containers.RepeatedCompositeFieldContainer[_task_pb2.Pool]
    def __init__(self, cpu_percent: _Optional[float] = ..., cpu_time_ms: _Optional[int] = ..., memory_rss_bytes: _Optional[int] = ..., actors: _Optional[_Iterable[_Union[ActorMetrics, _Mapping]]] = ..., host_cpu_percent: _Optional[float] = ..., host_memory_total_bytes: _Optional[int] = ..., host_memory_available_bytes: _Optional[int] = ..., pools: _Optional[_Iterable[_Union[_task_pb2.Pool, _Mapping]]] = ...) -> None: ...

class GetMetricsSummaryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CallMetrics(_message.Message):
    __slots__ = ("requests", "errors", "input_tokens", "output_tokens", "cost_nanos", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "avg_latency_ms")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    P50_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    P99_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    p50_latency_ms: float
    p95_latency_ms: float
    p99_latency_ms: float
    avg_latency_ms: float
    def __init__(self, requests: _Optional[int] = ..., errors: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_nanos: _Optional[int] = ..., p50_latency_ms: _Optional[float] = ..., p95_latency_ms: _Optional[float] = ..., p99_latency_ms: _Optional[float] = ..., avg_latency_ms: _Optional[float] = ...) -> None: ...

class ModelCallMetrics(_message.Message):
    __slots__ = ("model", "provider", "metrics")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    metrics: CallMetrics
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., metrics: _Optional[_Union[CallMetrics, _Mapping]] = ...) -> None: ...

class GetMetricsSummaryResponse(_message.Message):
    __slots__ = ("total", "models", "start_time", "tasks_processed")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    TASKS_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    total: CallMetrics
    models: _containers.RepeatedCompositeFieldContainer[ModelCallMetrics]
    start_time: _timestamp_pb2.Timestamp
    tasks_processed: int
    def __init__(self, total: _Optional[_Union[CallMetrics, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelCallMetrics, _Mapping]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tasks_processed: _Optional[int] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("types",)
    TYPES_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, types: _Optional[_Iterable[str]] = ...) -> None: ...

class SystemEvent(_message.Message):
    __slots__ = ("type", "event_time", "attributes", "sequence")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    type: str
    event_time: _timestamp_pb2.Timestamp
    attributes: _containers.ScalarMap[str, str]
    sequence: int
    def __init__(self, type: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., sequence: _Optional[int] = ...) -> None: ...

class EventsDropped(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("event", "dropped")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    event: SystemEvent
    dropped: EventsDropped
    def __init__(self, event: _Optional[_Union[SystemEvent, _Mapping]] = ..., dropped: _Optional[_Union[EventsDropped, _Mapping]] = ...) -> None: ...

class CacheKindStats(_message.Message):
    __slots__ = ("kind", "hits", "misses", "hit_rate", "shared", "refreshes", "entries", "size_bytes", "saved_cost_nanos")
    KIND_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    REFRESHES_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SAVED_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    kind: CacheKind
    hits: int
    misses: int
    hit_rate: float
    shared: int
    refreshes: int
    entries: int
    size_bytes: int
    saved_cost_nanos: int
    def __init__(self, kind: _Optional[_Union[CacheKind, str]] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., hit_rate: _Optional[float] = ..., shared: _Optional[int] = ..., refreshes: _Optional[int] = ..., entries: _Optional[int] = ..., size_bytes: _Optional[int] = ..., saved_cost_nanos: _Optional[int] = ...) -> None: ...

class GetCacheStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCacheStatsResponse(_message.Message):
    __slots__ = ("enabled", "hits", "misses", "hit_rate", "entries", "size_bytes", "evictions", "total_requests", "kinds", "backend", "backend_available", "backend_errors", "bypassed", "saved_cost_nanos")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_ERRORS_FIELD_NUMBER: _ClassVar[int]
    BYPASSED_FIELD_NUMBER: _ClassVar[int]
    SAVED_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    hits: int
    misses: int
    hit_rate: float
    entries: int
    size_bytes: int
    evictions: int
    total_requests: int
    kinds: _containers.RepeatedCompositeFieldContainer[CacheKindStats]
    backend: str
    backend_available: bool
    backend_errors: int
    bypassed: int
    saved_cost_nanos: int
    def __init__(self, enabled: _Optional[bool] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., hit_rate: _Optional[float] = ..., entries: _Optional[int] = ..., size_bytes: _Optional[int] = ..., evictions: _Optional[int] = ..., total_requests: _Optional[int] = ..., kinds: _Optional[_Iterable[_Union[CacheKindStats, _Mapping]]] = ..., backend: _Optional[str] = ..., backend_available: _Optional[bool] = ..., backend_errors: _Optional[int] = ..., bypassed: _Optional[int] = ..., saved_cost_nanos: _Optional[int] = ...) -> None: ...

class ClearCacheRequest(_message.Message):
    __slots__ = ("model", "kind", "namespace")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    model: str
    kind: CacheKind
    namespace: str
    def __init__(self, model: _Optional[str] = ..., kind: _Optional[_Union[CacheKind, str]] = ..., namespace: _Optional[str] = ...) -> None: ...

class ClearCacheResponse(_message.Message):
    __slots__ = ("entries_removed", "bytes_freed")
    ENTRIES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    entries_removed: int
    bytes_freed: int
    def __init__(self, entries_removed: _Optional[int] = ..., bytes_freed: _Optional[int] = ...) -> None: ...

class Provider(_message.Message):
    __slots__ = ("name", "kind", "base_url", "healthy", "circuit_state", "models", "api_key_configured", "breakers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_STATE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    API_KEY_CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    base_url: str
    healthy: bool
    circuit_state: CircuitState
    models: _containers.RepeatedScalarFieldContainer[str]
    api_key_configured: bool
    breakers: _containers.RepeatedCompositeFieldContainer[ModelBreaker]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., base_url: _Optional[str] = ..., healthy: _Optional[bool] = ..., circuit_state: _Optional[_Union[CircuitState, str]] = ..., models: _Optional[_Iterable[str]] = ..., api_key_configured: _Optional[bool] = ..., breakers: _Optional[_Iterable[_Union[ModelBreaker, _Mapping]]] = ...) -> None: ...

class ModelBreaker(_message.Message):
    __slots__ = ("model", "state", "consecutive_failures", "times_opened", "last_transition_time", "half_open_time")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    TIMES_OPENED_FIELD_NUMBER: _ClassVar[int]
    LAST_TRANSITION_TIME_FIELD_NUMBER: _ClassVar[int]
    HALF_OPEN_TIME_FIELD_NUMBER: _ClassVar[int]
    model: str
    state: CircuitState
    consecutive_failures: int
    times_opened: int
    last_transition_time: _timestamp_pb2.Timestamp
    half_open_time: _timestamp_pb2.Timestamp
    def __init__(self, model: _Optional[str] = ..., state: _Optional[_Union[CircuitState, str]] = ..., consecutive_failures: _Optional[int] = ..., times_opened: _Optional[int] = ..., last_transition_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., half_open_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProvidersResponse(_message.Message):
    __slots__ = ("providers", "next_page_token")
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[Provider]
    next_page_token: str
    def __init__(self, providers: _Optional[_Iterable[_Union[Provider, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetProviderStatsRequest(_message.Message):
    __slots__ = ("provider",)
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    provider: str
    def __init__(self, provider: _Optional[str] = ...) -> None: ...

class ProviderStats(_message.Message):
    __slots__ = ("provider", "requests", "successes", "failures", "success_rate", "input_tokens", "output_tokens", "cost_nanos", "avg_latency_ms", "last_request_time", "cancelled", "circuit_state", "breakers", "rejected")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_REQUEST_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_STATE_FIELD_NUMBER: _ClassVar[int]
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    provider: str
    requests: int
    successes: int
    failures: int
    success_rate: float
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    avg_latency_ms: float
    last_request_time: _timestamp_pb2.Timestamp
    cancelled: int
    circuit_state: CircuitState
    breakers: _containers.RepeatedCompositeFieldContainer[ModelBreaker]
    rejected: int
    def __init__(self, provider: _Optional[str] = ..., requests: _Optional[int] = ..., successes: _Optional[int] = ..., failures: _Optional[int] = ..., success_rate: _Optional[float] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_nanos: _Optional[int] = ..., avg_latency_ms: _Optional[float] = ..., last_request_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancelled: _Optional[int] = ..., circuit_state: _Optional[_Union[CircuitState, str]] = ..., breakers: _Optional[_Iterable[_Union[ModelBreaker, _Mapping]]] = ..., rejected: _Optional[int] = ...) -> None: ...

class GetProviderStatsResponse(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderStats]
    def __init__(self, providers: _Optional[_Iterable[_Union[ProviderStats, _Mapping]]] = ...) -> None: ...

class ModelLimits(_message.Message):
    __slots__ = ("model", "rpm", "tpm", "max_concurrency", "overridden")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RPM_FIELD_NUMBER: _ClassVar[int]
    TPM_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    OVERRIDDEN_FIELD_NUMBER: _ClassVar[int]
    model: str
    rpm: int
    tpm: int
    max_concurrency: int
    overridden: bool
    def __init__(self, model: _Optional[str] = ..., rpm: _Optional[int] = ..., tpm: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., overridden: _Optional[bool] = ...) -> None: ...

class ListModelLimitsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListModelLimitsResponse(_message.Message):
    __slots__ = ("limits",)
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[ModelLimits]
    def __init__(self, limits: _Optional[_Iterable[_Union[ModelLimits, _Mapping]]] = ...) -> None: ...

class SetModelLimitsRequest(_message.Message):
    __slots__ = ("model", "rpm", "tpm", "max_concurrency")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RPM_FIELD_NUMBER: _ClassVar[int]
    TPM_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    model: str
    rpm: int
    tpm: int
    max_concurrency: int
    def __init__(self, model: _Optional[str] = ..., rpm: _Optional[int] = ..., tpm: _Optional[int] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class SetModelLimitsResponse(_message.Message):
    __slots__ = ("limits", "previous_limits")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_LIMITS_FIELD_NUMBER: _ClassVar[int]
    limits: ModelLimits
    previous_limits: ModelLimits
    def __init__(self, limits: _Optional[_Union[ModelLimits, _Mapping]] = ..., previous_limits: _Optional[_Union[ModelLimits, _Mapping]] = ...) -> None: ...

class ApiKeyPolicy(_message.Message):
    __slots__ = ("name", "scopes", "tenant", "models", "rpm", "tpm", "budget_nanos", "max_streams", "disabled", "fingerprint")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    RPM_FIELD_NUMBER: _ClassVar[int]
    TPM_FIELD_NUMBER: _ClassVar[int]
    BUDGET_NANOS_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAMS_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    tenant: str
    models: _containers.RepeatedScalarFieldContainer[str]
    rpm: int
    tpm: int
    budget_nanos: int
    max_streams: int
    disabled: bool
    fingerprint: str
    def __init__(self, name: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., tenant: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., rpm: _Optional[int] = ..., tpm: _Optional[int] = ..., budget_nanos: _Optional[int] = ..., max_streams: _Optional[int] = ..., disabled: _Optional[bool] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKeyPolicy]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKeyPolicy, _Mapping]]] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("policy", "sha256")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    policy: ApiKeyPolicy
    sha256: str
    def __init__(self, policy: _Optional[_Union[ApiKeyPolicy, _Mapping]] = ..., sha256: _Optional[str] = ...) -> None: ...

class CreateApiKeyResponse(_message.Message):
    __slots__ = ("key", "api_key")
    KEY_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKeyPolicy
    api_key: str
    def __init__(self, key: _Optional[_Union[ApiKeyPolicy, _Mapping]] = ..., api_key: _Optional[str] = ...) -> None: ...

class DisableApiKeyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DisableApiKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKeyPolicy
    def __init__(self, key: _Optional[_Union[ApiKeyPolicy, _Mapping]] = ...) -> None: ...

class EnableApiKeyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class EnableApiKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKeyPolicy
    def __init__(self, key: _Optional[_Union[ApiKeyPolicy, _Mapping]] = ...) -> None: ...

class RotateApiKeyRequest(_message.Message):
    __slots__ = ("name", "previous_key_grace_ms", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_KEY_GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    previous_key_grace_ms: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., previous_key_grace_ms: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class RotateApiKeyResponse(_message.Message):
    __slots__ = ("key", "api_key")
    KEY_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKeyPolicy
    api_key: str
    def __init__(self, key: _Optional[_Union[ApiKeyPolicy, _Mapping]] = ..., api_key: _Optional[str] = ...) -> None: ...
