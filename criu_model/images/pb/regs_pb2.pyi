from criu_model.images.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RseqConfig(_message.Message):
    __slots__ = ("abi_pointer", "abi_size", "signature", "flags")
    ABI_POINTER_FIELD_NUMBER: _ClassVar[int]
    ABI_SIZE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    abi_pointer: int
    abi_size: int
    signature: int
    flags: int
    def __init__(self, abi_pointer: _Optional[int] = ..., abi_size: _Optional[int] = ..., signature: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class ThreadRegs(_message.Message):
    __slots__ = ("tid", "arch", "prstatus", "fpregs", "xstate", "sigmask", "rseq", "arm_tls", "audit_arch", "unreadable")
    TID_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    PRSTATUS_FIELD_NUMBER: _ClassVar[int]
    FPREGS_FIELD_NUMBER: _ClassVar[int]
    XSTATE_FIELD_NUMBER: _ClassVar[int]
    SIGMASK_FIELD_NUMBER: _ClassVar[int]
    RSEQ_FIELD_NUMBER: _ClassVar[int]
    ARM_TLS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ARCH_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    tid: int
    arch: str
    prstatus: bytes
    fpregs: bytes
    xstate: bytes
    sigmask: int
    rseq: RseqConfig
    arm_tls: bytes
    audit_arch: int
    unreadable: _containers.RepeatedCompositeFieldContainer[_common_pb2.Unreadable]
    def __init__(self, tid: _Optional[int] = ..., arch: _Optional[str] = ..., prstatus: _Optional[bytes] = ..., fpregs: _Optional[bytes] = ..., xstate: _Optional[bytes] = ..., sigmask: _Optional[int] = ..., rseq: _Optional[_Union[RseqConfig, _Mapping]] = ..., arm_tls: _Optional[bytes] = ..., audit_arch: _Optional[int] = ..., unreadable: _Optional[_Iterable[_Union[_common_pb2.Unreadable, _Mapping]]] = ...) -> None: ...

class ProcessRegs(_message.Message):
    __slots__ = ("pid", "threads", "unreadable")
    PID_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    pid: int
    threads: _containers.RepeatedCompositeFieldContainer[ThreadRegs]
    unreadable: _containers.RepeatedCompositeFieldContainer[_common_pb2.Unreadable]
    def __init__(self, pid: _Optional[int] = ..., threads: _Optional[_Iterable[_Union[ThreadRegs, _Mapping]]] = ..., unreadable: _Optional[_Iterable[_Union[_common_pb2.Unreadable, _Mapping]]] = ...) -> None: ...
