import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ComputeBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPUTE_BACKEND_UNSPECIFIED: _ClassVar[ComputeBackend]
    COMPUTE_BACKEND_LOCAL_PROCESS: _ClassVar[ComputeBackend]
    COMPUTE_BACKEND_DOCKER: _ClassVar[ComputeBackend]
    COMPUTE_BACKEND_PROXMOX_VM: _ClassVar[ComputeBackend]
    COMPUTE_BACKEND_PROXMOX_LXC: _ClassVar[ComputeBackend]

class ResourceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_STATUS_UNSPECIFIED: _ClassVar[ResourceStatus]
    RESOURCE_STATUS_PROVISIONING: _ClassVar[ResourceStatus]
    RESOURCE_STATUS_RUNNING: _ClassVar[ResourceStatus]
    RESOURCE_STATUS_RELEASING: _ClassVar[ResourceStatus]
    RESOURCE_STATUS_RELEASED: _ClassVar[ResourceStatus]
    RESOURCE_STATUS_FAILED: _ClassVar[ResourceStatus]
COMPUTE_BACKEND_UNSPECIFIED: ComputeBackend
COMPUTE_BACKEND_LOCAL_PROCESS: ComputeBackend
COMPUTE_BACKEND_DOCKER: ComputeBackend
COMPUTE_BACKEND_PROXMOX_VM: ComputeBackend
COMPUTE_BACKEND_PROXMOX_LXC: ComputeBackend
RESOURCE_STATUS_UNSPECIFIED: ResourceStatus
RESOURCE_STATUS_PROVISIONING: ResourceStatus
RESOURCE_STATUS_RUNNING: ResourceStatus
RESOURCE_STATUS_RELEASING: ResourceStatus
RESOURCE_STATUS_RELEASED: ResourceStatus
RESOURCE_STATUS_FAILED: ResourceStatus

class ResourceSpec(_message.Message):
    __slots__ = ("cpu_millis", "memory_mib", "disk_gib", "gpu_count", "gpu_type", "image", "template", "node", "storage", "env", "network", "labels")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    DISK_GIB_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    GPU_TYPE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    cpu_millis: int
    memory_mib: int
    disk_gib: int
    gpu_count: int
    gpu_type: str
    image: str
    template: str
    node: str
    storage: str
    env: _containers.ScalarMap[str, str]
    network: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, cpu_millis: _Optional[int] = ..., memory_mib: _Optional[int] = ..., disk_gib: _Optional[int] = ..., gpu_count: _Optional[int] = ..., gpu_type: _Optional[str] = ..., image: _Optional[str] = ..., template: _Optional[str] = ..., node: _Optional[str] = ..., storage: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., network: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("resource_id", "backend", "spec", "status", "status_message", "replicas", "backend_ids", "addresses", "create_time", "last_used_time", "release_time")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_IDS_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_TIME_FIELD_NUMBER: _ClassVar[int]
    RELEASE_TIME_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    backend: ComputeBackend
    spec: ResourceSpec
    status: ResourceStatus
    status_message: str
    replicas: int
    backend_ids: _containers.RepeatedScalarFieldContainer[str]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    last_used_time: _timestamp_pb2.Timestamp
    release_time: _timestamp_pb2.Timestamp
    def __init__(self, resource_id: _Optional[str] = ..., backend: _Optional[_Union[ComputeBackend, str]] = ..., spec: _Optional[_Union[ResourceSpec, _Mapping]] = ..., status: _Optional[_Union[ResourceStatus, str]] = ..., status_message: _Optional[str] = ..., replicas: _Optional[int] = ..., backend_ids: _Optional[_Iterable[str]] = ..., addresses: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., release_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ProvisionRequest(_message.Message):
    __slots__ = ("backend", "spec", "replicas", "request_id")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    backend: ComputeBackend
    spec: ResourceSpec
    replicas: int
    request_id: str
    def __init__(self, backend: _Optional[_Union[ComputeBackend, str]] = ..., spec: _Optional[_Union[ResourceSpec, _Mapping]] = ..., replicas: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ProvisionResponse(_message.Message):
    __slots__ = ("resource",)
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class GetResourceRequest(_message.Message):
    __slots__ = ("resource_id",)
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    def __init__(self, resource_id: _Optional[str] = ...) -> None: ...

class GetResourceResponse(_message.Message):
    __slots__ = ("resource",)
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class ListResourcesRequest(_message.Message):
    __slots__ = ("statuses", "backend", "page_size", "page_token")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[ResourceStatus]
    backend: ComputeBackend
    page_size: int
    page_token: str
    def __init__(self, statuses: _Optional[_Iterable[_Union[ResourceStatus, str]]] = ..., backend: _Optional[_Union[ComputeBackend, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResourcesResponse(_message.Message):
    __slots__ = ("resources", "next_page_token")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    next_page_token: str
    def __init__(self, resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("resource_id", "command", "env", "working_dir", "stdin", "timeout_ms", "replica")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    working_dir: str
    stdin: bytes
    timeout_ms: int
    replica: int
    def __init__(self, resource_id: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., working_dir: _Optional[str] = ..., stdin: _Optional[bytes] = ..., timeout_ms: _Optional[int] = ..., replica: _Optional[int] = ...) -> None: ...

class ExecuteExit(_message.Message):
    __slots__ = ("exit_code", "duration_ms", "timed_out")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    duration_ms: int
    timed_out: bool
    def __init__(self, exit_code: _Optional[int] = ..., duration_ms: _Optional[int] = ..., timed_out: _Optional[bool] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("stdout_chunk", "stderr_chunk", "exit")
    STDOUT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    STDERR_CHUNK_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    stdout_chunk: bytes
    stderr_chunk: bytes
    exit: ExecuteExit
    def __init__(self, stdout_chunk: _Optional[bytes] = ..., stderr_chunk: _Optional[bytes] = ..., exit: _Optional[_Union[ExecuteExit, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("resource_id",)
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    def __init__(self, resource_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("resource",)
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class ScaleRequest(_message.Message):
    __slots__ = ("resource_id", "replicas")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    replicas: int
    def __init__(self, resource_id: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class ScaleResponse(_message.Message):
    __slots__ = ("resource",)
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class CleanupRequest(_message.Message):
    __slots__ = ("idle_ms", "backend", "validate_only")
    IDLE_MS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    idle_ms: int
    backend: ComputeBackend
    validate_only: bool
    def __init__(self, idle_ms: _Optional[int] = ..., backend: _Optional[_Union[ComputeBackend, str]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class CleanupResponse(_message.Message):
    __slots__ = ("released_resource_ids",)
    RELEASED_RESOURCE_IDS_FIELD_NUMBER: _ClassVar[int]
    released_resource_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, released_resource_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ComputeCapacity(_message.Message):
    __slots__ = ("cpu_millis", "memory_mib", "disk_gib", "gpu_count")
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    DISK_GIB_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    cpu_millis: int
    memory_mib: int
    disk_gib: int
    gpu_count: int
    def __init__(self, cpu_millis: _Optional[int] = ..., memory_mib: _Optional[int] = ..., disk_gib: _Optional[int] = ..., gpu_count: _Optional[int] = ...) -> None: ...

class ResourceStatusCount(_message.Message):
    __slots__ = ("status", "count")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    status: ResourceStatus
    count: int
    def __init__(self, status: _Optional[_Union[ResourceStatus, str]] = ..., count: _Optional[int] = ...) -> None: ...

class ComputeBackendCount(_message.Message):
    __slots__ = ("backend", "count")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    backend: ComputeBackend
    count: int
    def __init__(self, backend: _Optional[_Union[ComputeBackend, str]] = ..., count: _Optional[int] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("total_capacity", "available_capacity", "status_counts", "backend_counts", "executions", "containers_created", "vms_created", "processes_created")
    TOTAL_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_COUNTS_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_CREATED_FIELD_NUMBER: _ClassVar[int]
    VMS_CREATED_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_CREATED_FIELD_NUMBER: _ClassVar[int]
    total_capacity: ComputeCapacity
    available_capacity: ComputeCapacity
    status_counts: _containers.RepeatedCompositeFieldContainer[ResourceStatusCount]
    backend_counts: _containers.RepeatedCompositeFieldContainer[ComputeBackendCount]
    executions: int
    containers_created: int
    vms_created: int
    processes_created: int
    def __init__(self, total_capacity: _Optional[_Union[ComputeCapacity, _Mapping]] = ..., available_capacity: _Optional[_Union[ComputeCapacity, _Mapping]] = ..., status_counts: _Optional[_Iterable[_Union[ResourceStatusCount, _Mapping]]] = ..., backend_counts: _Optional[_Iterable[_Union[ComputeBackendCount, _Mapping]]] = ..., executions: _Optional[int] = ..., containers_created: _Optional[int] = ..., vms_created: _Optional[int] = ..., processes_created: _Optional[int] = ...) -> None: ...
