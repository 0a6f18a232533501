from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAGE_STATE_UNSPECIFIED: _ClassVar[PageState]
    PAGE_STORED: _ClassVar[PageState]
    PAGE_ZERO: _ClassVar[PageState]
    PAGE_PARENT: _ClassVar[PageState]
PAGE_STATE_UNSPECIFIED: PageState
PAGE_STORED: PageState
PAGE_ZERO: PageState
PAGE_PARENT: PageState

class PageRuns(_message.Message):
    __slots__ = ("pid", "start_time", "object_dev", "object_ino", "object_path", "object_size", "addr", "npages", "state", "slot", "hashes", "hash_data")
    PID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    OBJECT_DEV_FIELD_NUMBER: _ClassVar[int]
    OBJECT_INO_FIELD_NUMBER: _ClassVar[int]
    OBJECT_PATH_FIELD_NUMBER: _ClassVar[int]
    OBJECT_SIZE_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    NPAGES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    HASH_DATA_FIELD_NUMBER: _ClassVar[int]
    pid: int
    start_time: int
    object_dev: int
    object_ino: int
    object_path: bytes
    object_size: int
    addr: _containers.RepeatedScalarFieldContainer[int]
    npages: _containers.RepeatedScalarFieldContainer[int]
    state: _containers.RepeatedScalarFieldContainer[int]
    slot: _containers.RepeatedScalarFieldContainer[int]
    hashes: _containers.RepeatedScalarFieldContainer[int]
    hash_data: bytes
    def __init__(self, pid: _Optional[int] = ..., start_time: _Optional[int] = ..., object_dev: _Optional[int] = ..., object_ino: _Optional[int] = ..., object_path: _Optional[bytes] = ..., object_size: _Optional[int] = ..., addr: _Optional[_Iterable[int]] = ..., npages: _Optional[_Iterable[int]] = ..., state: _Optional[_Iterable[int]] = ..., slot: _Optional[_Iterable[int]] = ..., hashes: _Optional[_Iterable[int]] = ..., hash_data: _Optional[bytes] = ...) -> None: ...
