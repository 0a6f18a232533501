from criu_model.images.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mount(_message.Message):
    __slots__ = ("mount_id", "parent_id", "dev_major", "dev_minor", "root", "mount_point", "options", "optional_fields", "fstype", "source", "super_options")
    MOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEV_MAJOR_FIELD_NUMBER: _ClassVar[int]
    DEV_MINOR_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    MOUNT_POINT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELDS_FIELD_NUMBER: _ClassVar[int]
    FSTYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SUPER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    mount_id: int
    parent_id: int
    dev_major: int
    dev_minor: int
    root: bytes
    mount_point: bytes
    options: str
    optional_fields: _containers.RepeatedScalarFieldContainer[str]
    fstype: str
    source: bytes
    super_options: str
    def __init__(self, mount_id: _Optional[int] = ..., parent_id: _Optional[int] = ..., dev_major: _Optional[int] = ..., dev_minor: _Optional[int] = ..., root: _Optional[bytes] = ..., mount_point: _Optional[bytes] = ..., options: _Optional[str] = ..., optional_fields: _Optional[_Iterable[str]] = ..., fstype: _Optional[str] = ..., source: _Optional[bytes] = ..., super_options: _Optional[str] = ...) -> None: ...

class MountNamespace(_message.Message):
    __slots__ = ("ns_inode", "read_from_pid", "mounts", "unreadable")
    NS_INODE_FIELD_NUMBER: _ClassVar[int]
    READ_FROM_PID_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    ns_inode: int
    read_from_pid: int
    mounts: _containers.RepeatedCompositeFieldContainer[Mount]
    unreadable: _containers.RepeatedCompositeFieldContainer[_common_pb2.Unreadable]
    def __init__(self, ns_inode: _Optional[int] = ..., read_from_pid: _Optional[int] = ..., mounts: _Optional[_Iterable[_Union[Mount, _Mapping]]] = ..., unreadable: _Optional[_Iterable[_Union[_common_pb2.Unreadable, _Mapping]]] = ...) -> None: ...
