from lossd._proto.lossd.v1 import lossd_pb2 as _lossd_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateRunRequest(_message.Message):
    __slots__ = ("loss", "options", "expected_batches", "run_id")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _lossd_pb2.OptionValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_lossd_pb2.OptionValue, _Mapping]] = ...) -> None: ...
    LOSS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    loss: str
    options: _containers.MessageMap[str, _lossd_pb2.OptionValue]
    expected_batches: int
    run_id: str
    def __init__(self, loss: _Optional[str] = ..., options: _Optional[_Mapping[str, _lossd_pb2.OptionValue]] = ..., expected_batches: _Optional[int] = ..., run_id: _Optional[str] = ...) -> None: ...

class RunRef(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class AddBatchRequest(_message.Message):
    __slots__ = ("run_id", "batch_id", "worker", "inputs", "generation")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _lossd_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_lossd_pb2.Tensor, _Mapping]] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    batch_id: str
    worker: str
    inputs: _containers.MessageMap[str, _lossd_pb2.Tensor]
    generation: str
    def __init__(self, run_id: _Optional[str] = ..., batch_id: _Optional[str] = ..., worker: _Optional[str] = ..., inputs: _Optional[_Mapping[str, _lossd_pb2.Tensor]] = ..., generation: _Optional[str] = ...) -> None: ...

class AddBatchResponse(_message.Message):
    __slots__ = ("counted", "batches")
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    counted: bool
    batches: int
    def __init__(self, counted: bool = ..., batches: _Optional[int] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "loss", "state", "expected_batches", "complete", "aggregate", "workers", "signature", "created", "updated", "options", "generation")
    class WorkersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _lossd_pb2.OptionValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_lossd_pb2.OptionValue, _Mapping]] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    loss: str
    state: str
    expected_batches: int
    complete: bool
    aggregate: _lossd_pb2.Aggregate
    workers: _containers.ScalarMap[str, int]
    signature: str
    created: float
    updated: float
    options: _containers.MessageMap[str, _lossd_pb2.OptionValue]
    generation: str
    def __init__(self, run_id: _Optional[str] = ..., loss: _Optional[str] = ..., state: _Optional[str] = ..., expected_batches: _Optional[int] = ..., complete: bool = ..., aggregate: _Optional[_Union[_lossd_pb2.Aggregate, _Mapping]] = ..., workers: _Optional[_Mapping[str, int]] = ..., signature: _Optional[str] = ..., created: _Optional[float] = ..., updated: _Optional[float] = ..., options: _Optional[_Mapping[str, _lossd_pb2.OptionValue]] = ..., generation: _Optional[str] = ...) -> None: ...

class DeleteRunResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("limit", "page_token", "offset", "state")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    limit: int
    page_token: str
    offset: int
    state: str
    def __init__(self, limit: _Optional[int] = ..., page_token: _Optional[str] = ..., offset: _Optional[int] = ..., state: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
