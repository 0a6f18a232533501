from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Unreadable(_message.Message):
    __slots__ = ("field", "reason")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    field: str
    reason: str
    def __init__(self, field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PathRef(_message.Message):
    __slots__ = ("path", "deleted", "dev", "ino")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    path: bytes
    deleted: bool
    dev: int
    ino: int
    def __init__(self, path: _Optional[bytes] = ..., deleted: _Optional[bool] = ..., dev: _Optional[int] = ..., ino: _Optional[int] = ...) -> None: ...
