from criu_model.images.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VmaKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VMA_KIND_UNSPECIFIED: _ClassVar[VmaKind]
    VMA_FILE: _ClassVar[VmaKind]
    VMA_ANON: _ClassVar[VmaKind]
    VMA_SHARED_ANON: _ClassVar[VmaKind]
    VMA_MEMFD: _ClassVar[VmaKind]
    VMA_HEAP: _ClassVar[VmaKind]
    VMA_STACK: _ClassVar[VmaKind]
    VMA_VDSO: _ClassVar[VmaKind]
    VMA_VVAR: _ClassVar[VmaKind]
    VMA_VSYSCALL: _ClassVar[VmaKind]
    VMA_SYSV_SHM: _ClassVar[VmaKind]
    VMA_OTHER: _ClassVar[VmaKind]
VMA_KIND_UNSPECIFIED: VmaKind
VMA_FILE: VmaKind
VMA_ANON: VmaKind
VMA_SHARED_ANON: VmaKind
VMA_MEMFD: VmaKind
VMA_HEAP: VmaKind
VMA_STACK: VmaKind
VMA_VDSO: VmaKind
VMA_VVAR: VmaKind
VMA_VSYSCALL: VmaKind
VMA_SYSV_SHM: VmaKind
VMA_OTHER: VmaKind

class PageCounts(_message.Message):
    __slots__ = ("resident", "swapped", "file", "exclusive")
    RESIDENT_FIELD_NUMBER: _ClassVar[int]
    SWAPPED_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    resident: int
    swapped: int
    file: int
    exclusive: int
    def __init__(self, resident: _Optional[int] = ..., swapped: _Optional[int] = ..., file: _Optional[int] = ..., exclusive: _Optional[int] = ...) -> None: ...

class Vma(_message.Message):
    __slots__ = ("start", "end", "prot", "shared", "offset", "dev_major", "dev_minor", "inode", "path", "deleted", "kind", "map_file_known", "map_file_dev", "map_file_ino", "pages")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PROT_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DEV_MAJOR_FIELD_NUMBER: _ClassVar[int]
    DEV_MINOR_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MAP_FILE_KNOWN_FIELD_NUMBER: _ClassVar[int]
    MAP_FILE_DEV_FIELD_NUMBER: _ClassVar[int]
    MAP_FILE_INO_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    prot: int
    shared: bool
    offset: int
    dev_major: int
    dev_minor: int
    inode: int
    path: bytes
    deleted: bool
    kind: VmaKind
    map_file_known: bool
    map_file_dev: int
    map_file_ino: int
    pages: PageCounts
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., prot: _Optional[int] = ..., shared: _Optional[bool] = ..., offset: _Optional[int] = ..., dev_major: _Optional[int] = ..., dev_minor: _Optional[int] = ..., inode: _Optional[int] = ..., path: _Optional[bytes] = ..., deleted: _Optional[bool] = ..., kind: _Optional[_Union[VmaKind, str]] = ..., map_file_known: _Optional[bool] = ..., map_file_dev: _Optional[int] = ..., map_file_ino: _Optional[int] = ..., pages: _Optional[_Union[PageCounts, _Mapping]] = ...) -> None: ...

class MemoryMap(_message.Message):
    __slots__ = ("pid", "vmas", "page_counts_method", "unreadable")
    PID_FIELD_NUMBER: _ClassVar[int]
    VMAS_FIELD_NUMBER: _ClassVar[int]
    PAGE_COUNTS_METHOD_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    pid: int
    vmas: _containers.RepeatedCompositeFieldContainer[Vma]
    page_counts_method: str
    unreadable: _containers.RepeatedCompositeFieldContainer[_common_pb2.Unreadable]
    def __init__(self, pid: _Optional[int] = ..., vmas: _Optional[_Iterable[_Union[Vma, _Mapping]]] = ..., page_counts_method: _Optional[str] = ..., unreadable: _Optional[_Iterable[_Union[_common_pb2.Unreadable, _Mapping]]] = ...) -> None: ...
