from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FreezeMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FREEZE_METHOD_UNSPECIFIED: _ClassVar[FreezeMethod]
    FREEZE_NONE: _ClassVar[FreezeMethod]
    FREEZE_PTRACE: _ClassVar[FreezeMethod]
    FREEZE_CGROUP: _ClassVar[FreezeMethod]
FREEZE_METHOD_UNSPECIFIED: FreezeMethod
FREEZE_NONE: FreezeMethod
FREEZE_PTRACE: FreezeMethod
FREEZE_CGROUP: FreezeMethod

class CollectorRun(_message.Message):
    __slots__ = ("name", "ran", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    ran: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., ran: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class SkippedProcess(_message.Message):
    __slots__ = ("pid", "reason")
    PID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    pid: int
    reason: str
    def __init__(self, pid: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ImageRecord(_message.Message):
    __slots__ = ("name", "entries", "sha256", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    entries: int
    sha256: bytes
    size: int
    def __init__(self, name: _Optional[str] = ..., entries: _Optional[int] = ..., sha256: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class PageStats(_message.Message):
    __slots__ = ("stored", "zero", "deduplicated", "inherited", "file_clean", "bytes_written", "shared_objects", "read_bytes")
    STORED_FIELD_NUMBER: _ClassVar[int]
    ZERO_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    INHERITED_FIELD_NUMBER: _ClassVar[int]
    FILE_CLEAN_FIELD_NUMBER: _ClassVar[int]
    BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    SHARED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    stored: int
    zero: int
    deduplicated: int
    inherited: int
    file_clean: int
    bytes_written: int
    shared_objects: int
    read_bytes: int
    def __init__(self, stored: _Optional[int] = ..., zero: _Optional[int] = ..., deduplicated: _Optional[int] = ..., inherited: _Optional[int] = ..., file_clean: _Optional[int] = ..., bytes_written: _Optional[int] = ..., shared_objects: _Optional[int] = ..., read_bytes: _Optional[int] = ...) -> None: ...

class Inventory(_message.Message):
    __slots__ = ("format_major", "format_minor", "tool_version", "kernel_release", "hostname", "time_ns", "root_pids", "freeze_method", "frozen_at_ns", "frozen_for_ns", "parent_snapshot", "collectors", "skipped", "dump_duration_ns", "boot_time_ns", "clock_ticks", "page_size", "images", "pages_captured", "page_stats", "parent_pagemap_sha256", "parent_time_ns")
    FORMAT_MAJOR_FIELD_NUMBER: _ClassVar[int]
    FORMAT_MINOR_FIELD_NUMBER: _ClassVar[int]
    TOOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_RELEASE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    ROOT_PIDS_FIELD_NUMBER: _ClassVar[int]
    FREEZE_METHOD_FIELD_NUMBER: _ClassVar[int]
    FROZEN_AT_NS_FIELD_NUMBER: _ClassVar[int]
    FROZEN_FOR_NS_FIELD_NUMBER: _ClassVar[int]
    PARENT_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    COLLECTORS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DUMP_DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    BOOT_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_TICKS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PAGES_CAPTURED_FIELD_NUMBER: _ClassVar[int]
    PAGE_STATS_FIELD_NUMBER: _ClassVar[int]
    PARENT_PAGEMAP_SHA256_FIELD_NUMBER: _ClassVar[int]
    PARENT_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    format_major: int
    format_minor: int
    tool_version: str
    kernel_release: str
    hostname: str
    time_ns: int
    root_pids: _containers.RepeatedScalarFieldContainer[int]
    freeze_method: FreezeMethod
    frozen_at_ns: int
    frozen_for_ns: int
    parent_snapshot: str
    collectors: _containers.RepeatedCompositeFieldContainer[CollectorRun]
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedProcess]
    dump_duration_ns: int
    boot_time_ns: int
    clock_ticks: int
    page_size: int
    images: _containers.RepeatedCompositeFieldContainer[ImageRecord]
    pages_captured: bool
    page_stats: PageStats
    parent_pagemap_sha256: bytes
    parent_time_ns: int
    def __init__(self, format_major: _Optional[int] = ..., format_minor: _Optional[int] = ..., tool_version: _Optional[str] = ..., kernel_release: _Optional[str] = ..., hostname: _Optional[str] = ..., time_ns: _Optional[int] = ..., root_pids: _Optional[_Iterable[int]] = ..., freeze_method: _Optional[_Union[FreezeMethod, str]] = ..., frozen_at_ns: _Optional[int] = ..., frozen_for_ns: _Optional[int] = ..., parent_snapshot: _Optional[str] = ..., collectors: _Optional[_Iterable[_Union[CollectorRun, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[SkippedProcess, _Mapping]]] = ..., dump_duration_ns: _Optional[int] = ..., boot_time_ns: _Optional[int] = ..., clock_ticks: _Optional[int] = ..., page_size: _Optional[int] = ..., images: _Optional[_Iterable[_Union[ImageRecord, _Mapping]]] = ..., pages_captured: _Optional[bool] = ..., page_stats: _Optional[_Union[PageStats, _Mapping]] = ..., parent_pagemap_sha256: _Optional[bytes] = ..., parent_time_ns: _Optional[int] = ...) -> None: ...
