from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_SYSTEM: _ClassVar[Role]
    ROLE_USER: _ClassVar[Role]
    ROLE_ASSISTANT: _ClassVar[Role]
    ROLE_TOOL: _ClassVar[Role]

class ReasoningBlockFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASONING_BLOCK_FORMAT_UNSPECIFIED: _ClassVar[ReasoningBlockFormat]
    REASONING_BLOCK_FORMAT_ANTHROPIC_THINKING: _ClassVar[ReasoningBlockFormat]
    REASONING_BLOCK_FORMAT_ANTHROPIC_REDACTED_THINKING: _ClassVar[ReasoningBlockFormat]
    REASONING_BLOCK_FORMAT_GEMINI_THOUGHT: _ClassVar[ReasoningBlockFormat]
    REASONING_BLOCK_FORMAT_GEMINI_TEXT_SIGNATURE: _ClassVar[ReasoningBlockFormat]

class ToolChoiceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_CHOICE_MODE_UNSPECIFIED: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_AUTO: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_NONE: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_REQUIRED: _ClassVar[ToolChoiceMode]

class ResponseFormatType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESPONSE_FORMAT_TYPE_UNSPECIFIED: _ClassVar[ResponseFormatType]
    RESPONSE_FORMAT_TYPE_TEXT: _ClassVar[ResponseFormatType]
    RESPONSE_FORMAT_TYPE_JSON_OBJECT: _ClassVar[ResponseFormatType]
    RESPONSE_FORMAT_TYPE_JSON_SCHEMA: _ClassVar[ResponseFormatType]

class ReasoningEffort(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASONING_EFFORT_UNSPECIFIED: _ClassVar[ReasoningEffort]
    REASONING_EFFORT_LOW: _ClassVar[ReasoningEffort]
    REASONING_EFFORT_MEDIUM: _ClassVar[ReasoningEffort]
    REASONING_EFFORT_HIGH: _ClassVar[ReasoningEffort]

class ReasoningKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASONING_KIND_UNSPECIFIED: _ClassVar[ReasoningKind]
    REASONING_KIND_TEXT: _ClassVar[ReasoningKind]
    REASONING_KIND_SUMMARY: _ClassVar[ReasoningKind]

class RoutingPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTING_POLICY_UNSPECIFIED: _ClassVar[RoutingPolicy]
    ROUTING_POLICY_COST: _ClassVar[RoutingPolicy]
    ROUTING_POLICY_QUALITY: _ClassVar[RoutingPolicy]
    ROUTING_POLICY_LATENCY: _ClassVar[RoutingPolicy]
    ROUTING_POLICY_BALANCED: _ClassVar[RoutingPolicy]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_CONTENT_FILTER: _ClassVar[FinishReason]
    FINISH_REASON_TOOL_CALLS: _ClassVar[FinishReason]
    FINISH_REASON_BUDGET_EXCEEDED: _ClassVar[FinishReason]
    FINISH_REASON_ERROR: _ClassVar[FinishReason]

class MidStreamFailover(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MID_STREAM_FAILOVER_UNSPECIFIED: _ClassVar[MidStreamFailover]
    MID_STREAM_FAILOVER_CONTINUE: _ClassVar[MidStreamFailover]
    MID_STREAM_FAILOVER_CONTINUE_OR_RESTART: _ClassVar[MidStreamFailover]
    MID_STREAM_FAILOVER_RESTART: _ClassVar[MidStreamFailover]
    MID_STREAM_FAILOVER_NONE: _ClassVar[MidStreamFailover]

class CacheMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_MODE_UNSPECIFIED: _ClassVar[CacheMode]
    CACHE_MODE_AUTO: _ClassVar[CacheMode]
    CACHE_MODE_READ_WRITE: _ClassVar[CacheMode]
    CACHE_MODE_BYPASS: _ClassVar[CacheMode]
    CACHE_MODE_REFRESH: _ClassVar[CacheMode]

class UsageSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_SOURCE_UNSPECIFIED: _ClassVar[UsageSource]
    USAGE_SOURCE_PROVIDER_REPORTED: _ClassVar[UsageSource]
    USAGE_SOURCE_ESTIMATED: _ClassVar[UsageSource]
ROLE_UNSPECIFIED: Role
ROLE_SYSTEM: Role
ROLE_USER: Role
ROLE_ASSISTANT: Role
ROLE_TOOL: Role
REASONING_BLOCK_FORMAT_UNSPECIFIED: ReasoningBlockFormat
REASONING_BLOCK_FORMAT_ANTHROPIC_THINKING: ReasoningBlockFormat
REASONING_BLOCK_FORMAT_ANTHROPIC_REDACTED_THINKING: ReasoningBlockFormat
REASONING_BLOCK_FORMAT_GEMINI_THOUGHT: ReasoningBlockFormat
REASONING_BLOCK_FORMAT_GEMINI_TEXT_SIGNATURE: ReasoningBlockFormat
TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoiceMode
TOOL_CHOICE_MODE_AUTO: ToolChoiceMode
TOOL_CHOICE_MODE_NONE: ToolChoiceMode
TOOL_CHOICE_MODE_REQUIRED: ToolChoiceMode
RESPONSE_FORMAT_TYPE_UNSPECIFIED: ResponseFormatType
RESPONSE_FORMAT_TYPE_TEXT: ResponseFormatType
RESPONSE_FORMAT_TYPE_JSON_OBJECT: ResponseFormatType
RESPONSE_FORMAT_TYPE_JSON_SCHEMA: ResponseFormatType
REASONING_EFFORT_UNSPECIFIED: ReasoningEffort
REASONING_EFFORT_LOW: ReasoningEffort
REASONING_EFFORT_MEDIUM: ReasoningEffort
REASONING_EFFORT_HIGH: ReasoningEffort
REASONING_KIND_UNSPECIFIED: ReasoningKind
REASONING_KIND_TEXT: ReasoningKind
REASONING_KIND_SUMMARY: ReasoningKind
ROUTING_POLICY_UNSPECIFIED: RoutingPolicy
ROUTING_POLICY_COST: RoutingPolicy
ROUTING_POLICY_QUALITY: RoutingPolicy
ROUTING_POLICY_LATENCY: RoutingPolicy
ROUTING_POLICY_BALANCED: RoutingPolicy
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_CONTENT_FILTER: FinishReason
FINISH_REASON_TOOL_CALLS: FinishReason
FINISH_REASON_BUDGET_EXCEEDED: FinishReason
FINISH_REASON_ERROR: FinishReason
MID_STREAM_FAILOVER_UNSPECIFIED: MidStreamFailover
MID_STREAM_FAILOVER_CONTINUE: MidStreamFailover
MID_STREAM_FAILOVER_CONTINUE_OR_RESTART: MidStreamFailover
MID_STREAM_FAILOVER_RESTART: MidStreamFailover
MID_STREAM_FAILOVER_NONE: MidStreamFailover
CACHE_MODE_UNSPECIFIED: CacheMode
CACHE_MODE_AUTO: CacheMode
CACHE_MODE_READ_WRITE: CacheMode
CACHE_MODE_BYPASS: CacheMode
CACHE_MODE_REFRESH: CacheMode
USAGE_SOURCE_UNSPECIFIED: UsageSource
USAGE_SOURCE_PROVIDER_REPORTED: UsageSource
USAGE_SOURCE_ESTIMATED: UsageSource

class ChatMessage(_message.Message):
    __slots__ = ("role", "content", "parts", "tool_calls", "tool_call_id", "reasoning_blocks")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REASONING_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    role: Role
    content: str
    parts: _containers.RepeatedCompositeFieldContainer[ContentPart]
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    tool_call_id: str
    reasoning_blocks: _containers.RepeatedCompositeFieldContainer[ReasoningBlock]
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., content: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[ContentPart, _Mapping]]] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., tool_call_id: _Optional[str] = ..., reasoning_blocks: _Optional[_Iterable[_Union[ReasoningBlock, _Mapping]]] = ...) -> None: ...

class ReasoningBlock(_message.Message):
    __slots__ = ("format", "text", "signature", "data")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    format: ReasoningBlockFormat
    text: str
    signature: str
    data: str
    def __init__(self, format: _Optional[_Union[ReasoningBlockFormat, str]] = ..., text: _Optional[str] = ..., signature: _Optional[str] = ..., data: _Optional[str] = ...) -> None: ...

class ContentPart(_message.Message):
    __slots__ = ("text", "image")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    image: Image
    def __init__(self, text: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("url", "data", "media_type", "detail")
    URL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    url: str
    data: bytes
    media_type: str
    detail: str
    def __init__(self, url: _Optional[str] = ..., data: _Optional[bytes] = ..., media_type: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("id", "name", "arguments", "signature")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    arguments: str
    signature: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., arguments: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "description", "parameters_json_schema", "strict")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_json_schema: str
    strict: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json_schema: _Optional[str] = ..., strict: _Optional[bool] = ...) -> None: ...

class ToolChoice(_message.Message):
    __slots__ = ("mode", "tool")
    MODE_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    mode: ToolChoiceMode
    tool: str
    def __init__(self, mode: _Optional[_Union[ToolChoiceMode, str]] = ..., tool: _Optional[str] = ...) -> None: ...

class ResponseFormat(_message.Message):
    __slots__ = ("type", "name", "json_schema", "strict", "description")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    type: ResponseFormatType
    name: str
    json_schema: str
    strict: bool
    description: str
    def __init__(self, type: _Optional[_Union[ResponseFormatType, str]] = ..., name: _Optional[str] = ..., json_schema: _Optional[str] = ..., strict: _Optional[bool] = ..., description: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "source")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    source: UsageSource
    def __init__(self, input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., source: _Optional[_Union[UsageSource, str]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "messages", "model", "max_tokens", "temperature", "top_p", "stop", "seed", "job_id", "routing_policy", "fallback_models", "cache_bypass", "labels", "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort", "cache_mode")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTING_POLICY_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_MODELS_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYPASS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    REASONING_EFFORT_FIELD_NUMBER: _ClassVar[int]
    CACHE_MODE_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    model: str
    max_tokens: int
    temperature: float
    top_p: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    job_id: str
    routing_policy: RoutingPolicy
    fallback_models: _containers.RepeatedScalarFieldContainer[str]
    cache_bypass: bool
    labels: _containers.ScalarMap[str, str]
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    tool_choice: ToolChoice
    parallel_tool_calls: bool
    response_format: ResponseFormat
    reasoning_effort: ReasoningEffort
    cache_mode: CacheMode
    def __init__(self, prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., model: _Optional[str] = ..., max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., job_id: _Optional[str] = ..., routing_policy: _Optional[_Union[RoutingPolicy, str]] = ..., fallback_models: _Optional[_Iterable[str]] = ..., cache_bypass: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., tool_choice: _Optional[_Union[ToolChoice, _Mapping]] = ..., parallel_tool_calls: _Optional[bool] = ..., response_format: _Optional[_Union[ResponseFormat, _Mapping]] = ..., reasoning_effort: _Optional[_Union[ReasoningEffort, str]] = ..., cache_mode: _Optional[_Union[CacheMode, str]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("request_id", "model", "provider", "text", "finish_reason", "usage", "cost_nanos", "latency_ms", "time_to_first_token_ms", "attempts", "cache_hit", "route_reason", "tool_calls", "reasoning", "reasoning_kind", "cache_saved_cost_nanos", "reasoning_blocks")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_REASON_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    REASONING_KIND_FIELD_NUMBER: _ClassVar[int]
    CACHE_SAVED_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    REASONING_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    provider: str
    text: str
    finish_reason: FinishReason
    usage: Usage
    cost_nanos: int
    latency_ms: float
    time_to_first_token_ms: float
    attempts: int
    cache_hit: bool
    route_reason: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    reasoning: str
    reasoning_kind: ReasoningKind
    cache_saved_cost_nanos: int
    reasoning_blocks: _containers.RepeatedCompositeFieldContainer[ReasoningBlock]
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., text: _Optional[str] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., cost_nanos: _Optional[int] = ..., latency_ms: _Optional[float] = ..., time_to_first_token_ms: _Optional[float] = ..., attempts: _Optional[int] = ..., cache_hit: _Optional[bool] = ..., route_reason: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., reasoning: _Optional[str] = ..., reasoning_kind: _Optional[_Union[ReasoningKind, str]] = ..., cache_saved_cost_nanos: _Optional[int] = ..., reasoning_blocks: _Optional[_Iterable[_Union[ReasoningBlock, _Mapping]]] = ...) -> None: ...

class GenerateStreamRequest(_message.Message):
    __slots__ = ("request", "usage_interval_deltas", "mid_stream_failover")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    USAGE_INTERVAL_DELTAS_FIELD_NUMBER: _ClassVar[int]
    MID_STREAM_FAILOVER_FIELD_NUMBER: _ClassVar[int]
    request: GenerateRequest
    usage_interval_deltas: int
    mid_stream_failover: MidStreamFailover
    def __init__(self, request: _Optional[_Union[GenerateRequest, _Mapping]] = ..., usage_interval_deltas: _Optional[int] = ..., mid_stream_failover: _Optional[_Union[MidStreamFailover, str]] = ...) -> None: ...

class StreamStarted(_message.Message):
    __slots__ = ("request_id", "model", "provider", "attempt", "route_reason", "cache_hit")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_REASON_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    provider: str
    attempt: int
    route_reason: str
    cache_hit: bool
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., attempt: _Optional[int] = ..., route_reason: _Optional[str] = ..., cache_hit: _Optional[bool] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ToolCallDelta(_message.Message):
    __slots__ = ("index", "id", "name", "arguments")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    name: str
    arguments: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., arguments: _Optional[str] = ...) -> None: ...

class ReasoningDelta(_message.Message):
    __slots__ = ("text", "kind")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    text: str
    kind: ReasoningKind
    def __init__(self, text: _Optional[str] = ..., kind: _Optional[_Union[ReasoningKind, str]] = ...) -> None: ...

class UsageUpdate(_message.Message):
    __slots__ = ("usage", "cost_nanos")
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    usage: Usage
    cost_nanos: int
    def __init__(self, usage: _Optional[_Union[Usage, _Mapping]] = ..., cost_nanos: _Optional[int] = ...) -> None: ...

class Fallback(_message.Message):
    __slots__ = ("from_model", "to_model", "to_provider", "cause", "message", "attempt", "restart")
    FROM_MODEL_FIELD_NUMBER: _ClassVar[int]
    TO_MODEL_FIELD_NUMBER: _ClassVar[int]
    TO_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    from_model: str
    to_model: str
    to_provider: str
    cause: str
    message: str
    attempt: int
    restart: bool
    def __init__(self, from_model: _Optional[str] = ..., to_model: _Optional[str] = ..., to_provider: _Optional[str] = ..., cause: _Optional[str] = ..., message: _Optional[str] = ..., attempt: _Optional[int] = ..., restart: _Optional[bool] = ...) -> None: ...

class StreamFinal(_message.Message):
    __slots__ = ("finish_reason", "usage", "cost_nanos", "latency_ms", "time_to_first_token_ms", "model", "provider", "attempts", "tool_calls", "cache_hit", "cache_saved_cost_nanos", "reasoning_blocks")
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    CACHE_SAVED_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    REASONING_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    finish_reason: FinishReason
    usage: Usage
    cost_nanos: int
    latency_ms: float
    time_to_first_token_ms: float
    model: str
    provider: str
    attempts: int
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    cache_hit: bool
    cache_saved_cost_nanos: int
    reasoning_blocks: _containers.RepeatedCompositeFieldContainer[ReasoningBlock]
    def __init__(self, finish_reason: _Optional[_Union[FinishReason, str]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., cost_nanos: _Optional[int] = ..., latency_ms: _Optional[float] = ..., time_to_first_token_ms: _Optional[float] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., attempts: _Optional[int] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., cache_hit: _Optional[bool] = ..., cache_saved_cost_nanos: _Optional[int] = ..., reasoning_blocks: _Optional[_Iterable[_Union[ReasoningBlock, _Mapping]]] = ...) -> None: ...

class GenerateStreamResponse(_message.Message):
    __slots__ = ("started", "delta", "usage", "fallback", "final", "tool_call", "reasoning")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    started: StreamStarted
    delta: TextDelta
    usage: UsageUpdate
    fallback: Fallback
    final: StreamFinal
    tool_call: ToolCallDelta
    reasoning: ReasoningDelta
    def __init__(self, started: _Optional[_Union[StreamStarted, _Mapping]] = ..., delta: _Optional[_Union[TextDelta, _Mapping]] = ..., usage: _Optional[_Union[UsageUpdate, _Mapping]] = ..., fallback: _Optional[_Union[Fallback, _Mapping]] = ..., final: _Optional[_Union[StreamFinal, _Mapping]] = ..., tool_call: _Optional[_Union[ToolCallDelta, _Mapping]] = ..., reasoning: _Optional[_Union[ReasoningDelta, _Mapping]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("model", "inputs", "job_id", "cache_mode")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CACHE_MODE_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    job_id: str
    cache_mode: CacheMode
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., job_id: _Optional[str] = ..., cache_mode: _Optional[_Union[CacheMode, str]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("index", "values")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    index: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, index: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("request_id", "model", "provider", "embeddings", "usage", "cost_nanos", "cache_hit", "cache_saved_cost_nanos")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    CACHE_SAVED_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    provider: str
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    usage: Usage
    cost_nanos: int
    cache_hit: bool
    cache_saved_cost_nanos: int
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., cost_nanos: _Optional[int] = ..., cache_hit: _Optional[bool] = ..., cache_saved_cost_nanos: _Optional[int] = ...) -> None: ...
