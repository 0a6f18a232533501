from criu_model.images.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FdKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FD_KIND_UNSPECIFIED: _ClassVar[FdKind]
    FD_REGULAR: _ClassVar[FdKind]
    FD_DIRECTORY: _ClassVar[FdKind]
    FD_OPATH: _ClassVar[FdKind]
    FD_PIPE: _ClassVar[FdKind]
    FD_FIFO: _ClassVar[FdKind]
    FD_SOCKET: _ClassVar[FdKind]
    FD_EVENTFD: _ClassVar[FdKind]
    FD_EPOLL: _ClassVar[FdKind]
    FD_INOTIFY: _ClassVar[FdKind]
    FD_FANOTIFY: _ClassVar[FdKind]
    FD_SIGNALFD: _ClassVar[FdKind]
    FD_TIMERFD: _ClassVar[FdKind]
    FD_PIDFD: _ClassVar[FdKind]
    FD_MEMFD: _ClassVar[FdKind]
    FD_TTY: _ClassVar[FdKind]
    FD_IO_URING: _ClassVar[FdKind]
    FD_UNKNOWN: _ClassVar[FdKind]
    FD_NSFS: _ClassVar[FdKind]

class LockType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCK_TYPE_UNSPECIFIED: _ClassVar[LockType]
    LOCK_POSIX: _ClassVar[LockType]
    LOCK_FLOCK: _ClassVar[LockType]
    LOCK_OFD: _ClassVar[LockType]
    LOCK_LEASE: _ClassVar[LockType]
    LOCK_DELEG: _ClassVar[LockType]
    LOCK_OTHER: _ClassVar[LockType]

class LockMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCK_MODE_UNSPECIFIED: _ClassVar[LockMode]
    LOCK_READ: _ClassVar[LockMode]
    LOCK_WRITE: _ClassVar[LockMode]
    LOCK_UNLCK: _ClassVar[LockMode]

class OwnerType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OWNER_TID: _ClassVar[OwnerType]
    OWNER_PID: _ClassVar[OwnerType]
    OWNER_PGRP: _ClassVar[OwnerType]

class FanotifyMarkType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FANOTIFY_MARK_UNSPECIFIED: _ClassVar[FanotifyMarkType]
    FANOTIFY_MARK_INODE: _ClassVar[FanotifyMarkType]
    FANOTIFY_MARK_MOUNT: _ClassVar[FanotifyMarkType]
    FANOTIFY_MARK_FILESYSTEM: _ClassVar[FanotifyMarkType]
    FANOTIFY_MARK_OTHER: _ClassVar[FanotifyMarkType]
FD_KIND_UNSPECIFIED: FdKind
FD_REGULAR: FdKind
FD_DIRECTORY: FdKind
FD_OPATH: FdKind
FD_PIPE: FdKind
FD_FIFO: FdKind
FD_SOCKET: FdKind
FD_EVENTFD: FdKind
FD_EPOLL: FdKind
FD_INOTIFY: FdKind
FD_FANOTIFY: FdKind
FD_SIGNALFD: FdKind
FD_TIMERFD: FdKind
FD_PIDFD: FdKind
FD_MEMFD: FdKind
FD_TTY: FdKind
FD_IO_URING: FdKind
FD_UNKNOWN: FdKind
FD_NSFS: FdKind
LOCK_TYPE_UNSPECIFIED: LockType
LOCK_POSIX: LockType
LOCK_FLOCK: LockType
LOCK_OFD: LockType
LOCK_LEASE: LockType
LOCK_DELEG: LockType
LOCK_OTHER: LockType
LOCK_MODE_UNSPECIFIED: LockMode
LOCK_READ: LockMode
LOCK_WRITE: LockMode
LOCK_UNLCK: LockMode
OWNER_TID: OwnerType
OWNER_PID: OwnerType
OWNER_PGRP: OwnerType
FANOTIFY_MARK_UNSPECIFIED: FanotifyMarkType
FANOTIFY_MARK_INODE: FanotifyMarkType
FANOTIFY_MARK_MOUNT: FanotifyMarkType
FANOTIFY_MARK_FILESYSTEM: FanotifyMarkType
FANOTIFY_MARK_OTHER: FanotifyMarkType

class FileLock(_message.Message):
    __slots__ = ("type", "mode", "start", "end", "to_eof", "pid", "mandatory", "blocked", "dev", "ino", "raw")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TO_EOF_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    MANDATORY_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    type: LockType
    mode: LockMode
    start: int
    end: int
    to_eof: bool
    pid: int
    mandatory: bool
    blocked: bool
    dev: int
    ino: int
    raw: str
    def __init__(self, type: _Optional[_Union[LockType, str]] = ..., mode: _Optional[_Union[LockMode, str]] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., to_eof: _Optional[bool] = ..., pid: _Optional[int] = ..., mandatory: _Optional[bool] = ..., blocked: _Optional[bool] = ..., dev: _Optional[int] = ..., ino: _Optional[int] = ..., raw: _Optional[str] = ...) -> None: ...

class GhostRef(_message.Message):
    __slots__ = ("ghost_id", "captured", "size")
    GHOST_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ghost_id: int
    captured: bool
    size: int
    def __init__(self, ghost_id: _Optional[int] = ..., captured: _Optional[bool] = ..., size: _Optional[int] = ...) -> None: ...

class RegularFile(_message.Message):
    __slots__ = ("size", "mtime_ns", "mode", "dev", "ino", "nlink", "rdev", "ghost", "uid", "gid", "link_target")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    NLINK_FIELD_NUMBER: _ClassVar[int]
    RDEV_FIELD_NUMBER: _ClassVar[int]
    GHOST_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    LINK_TARGET_FIELD_NUMBER: _ClassVar[int]
    size: int
    mtime_ns: int
    mode: int
    dev: int
    ino: int
    nlink: int
    rdev: int
    ghost: GhostRef
    uid: int
    gid: int
    link_target: bytes
    def __init__(self, size: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., mode: _Optional[int] = ..., dev: _Optional[int] = ..., ino: _Optional[int] = ..., nlink: _Optional[int] = ..., rdev: _Optional[int] = ..., ghost: _Optional[_Union[GhostRef, _Mapping]] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., link_target: _Optional[bytes] = ...) -> None: ...

class Pipe(_message.Message):
    __slots__ = ("pipe_ino", "read_end", "write_end", "queued_bytes", "pipe_size", "data")
    PIPE_INO_FIELD_NUMBER: _ClassVar[int]
    READ_END_FIELD_NUMBER: _ClassVar[int]
    WRITE_END_FIELD_NUMBER: _ClassVar[int]
    QUEUED_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIPE_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    pipe_ino: int
    read_end: bool
    write_end: bool
    queued_bytes: int
    pipe_size: int
    data: bytes
    def __init__(self, pipe_ino: _Optional[int] = ..., read_end: _Optional[bool] = ..., write_end: _Optional[bool] = ..., queued_bytes: _Optional[int] = ..., pipe_size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SocketRef(_message.Message):
    __slots__ = ("inode", "probe")
    INODE_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    inode: int
    probe: SocketProbe
    def __init__(self, inode: _Optional[int] = ..., probe: _Optional[_Union[SocketProbe, _Mapping]] = ...) -> None: ...

class SocketProbe(_message.Message):
    __slots__ = ("domain", "type", "protocol", "listening", "tcp_state", "src", "sport", "dst", "dport", "bound_device", "options", "rqueue", "wqueue")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    LISTENING_FIELD_NUMBER: _ClassVar[int]
    TCP_STATE_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    SPORT_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    DPORT_FIELD_NUMBER: _ClassVar[int]
    BOUND_DEVICE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    RQUEUE_FIELD_NUMBER: _ClassVar[int]
    WQUEUE_FIELD_NUMBER: _ClassVar[int]
    domain: int
    type: int
    protocol: int
    listening: bool
    tcp_state: int
    src: str
    sport: int
    dst: str
    dport: int
    bound_device: str
    options: _containers.ScalarMap[str, int]
    rqueue: int
    wqueue: int
    def __init__(self, domain: _Optional[int] = ..., type: _Optional[int] = ..., protocol: _Optional[int] = ..., listening: _Optional[bool] = ..., tcp_state: _Optional[int] = ..., src: _Optional[str] = ..., sport: _Optional[int] = ..., dst: _Optional[str] = ..., dport: _Optional[int] = ..., bound_device: _Optional[str] = ..., options: _Optional[_Mapping[str, int]] = ..., rqueue: _Optional[int] = ..., wqueue: _Optional[int] = ...) -> None: ...

class Eventfd(_message.Message):
    __slots__ = ("count", "semaphore", "id")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEMAPHORE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    count: int
    semaphore: bool
    id: int
    def __init__(self, count: _Optional[int] = ..., semaphore: _Optional[bool] = ..., id: _Optional[int] = ...) -> None: ...

class EpollTarget(_message.Message):
    __slots__ = ("tfd", "events", "data", "pos", "ino", "sdev", "file_id", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TFD_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    SDEV_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    tfd: int
    events: int
    data: int
    pos: int
    ino: int
    sdev: int
    file_id: int
    extra: _containers.ScalarMap[str, str]
    def __init__(self, tfd: _Optional[int] = ..., events: _Optional[int] = ..., data: _Optional[int] = ..., pos: _Optional[int] = ..., ino: _Optional[int] = ..., sdev: _Optional[int] = ..., file_id: _Optional[int] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Epoll(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[EpollTarget]
    def __init__(self, targets: _Optional[_Iterable[_Union[EpollTarget, _Mapping]]] = ...) -> None: ...

class InotifyWatch(_message.Message):
    __slots__ = ("wd", "ino", "sdev", "mask", "ignored_mask", "fhandle_bytes", "fhandle_type", "f_handle", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WD_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    SDEV_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    IGNORED_MASK_FIELD_NUMBER: _ClassVar[int]
    FHANDLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FHANDLE_TYPE_FIELD_NUMBER: _ClassVar[int]
    F_HANDLE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    wd: int
    ino: int
    sdev: int
    mask: int
    ignored_mask: int
    fhandle_bytes: int
    fhandle_type: int
    f_handle: bytes
    extra: _containers.ScalarMap[str, str]
    def __init__(self, wd: _Optional[int] = ..., ino: _Optional[int] = ..., sdev: _Optional[int] = ..., mask: _Optional[int] = ..., ignored_mask: _Optional[int] = ..., fhandle_bytes: _Optional[int] = ..., fhandle_type: _Optional[int] = ..., f_handle: _Optional[bytes] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Inotify(_message.Message):
    __slots__ = ("watches",)
    WATCHES_FIELD_NUMBER: _ClassVar[int]
    watches: _containers.RepeatedCompositeFieldContainer[InotifyWatch]
    def __init__(self, watches: _Optional[_Iterable[_Union[InotifyWatch, _Mapping]]] = ...) -> None: ...

class FanotifyMark(_message.Message):
    __slots__ = ("type", "ino", "sdev", "mnt_id", "mflags", "mask", "ignored_mask", "fhandle_bytes", "fhandle_type", "f_handle", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    SDEV_FIELD_NUMBER: _ClassVar[int]
    MNT_ID_FIELD_NUMBER: _ClassVar[int]
    MFLAGS_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    IGNORED_MASK_FIELD_NUMBER: _ClassVar[int]
    FHANDLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FHANDLE_TYPE_FIELD_NUMBER: _ClassVar[int]
    F_HANDLE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    type: FanotifyMarkType
    ino: int
    sdev: int
    mnt_id: int
    mflags: int
    mask: int
    ignored_mask: int
    fhandle_bytes: int
    fhandle_type: int
    f_handle: bytes
    extra: _containers.ScalarMap[str, str]
    def __init__(self, type: _Optional[_Union[FanotifyMarkType, str]] = ..., ino: _Optional[int] = ..., sdev: _Optional[int] = ..., mnt_id: _Optional[int] = ..., mflags: _Optional[int] = ..., mask: _Optional[int] = ..., ignored_mask: _Optional[int] = ..., fhandle_bytes: _Optional[int] = ..., fhandle_type: _Optional[int] = ..., f_handle: _Optional[bytes] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Fanotify(_message.Message):
    __slots__ = ("flags", "event_flags", "marks")
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    EVENT_FLAGS_FIELD_NUMBER: _ClassVar[int]
    MARKS_FIELD_NUMBER: _ClassVar[int]
    flags: int
    event_flags: int
    marks: _containers.RepeatedCompositeFieldContainer[FanotifyMark]
    def __init__(self, flags: _Optional[int] = ..., event_flags: _Optional[int] = ..., marks: _Optional[_Iterable[_Union[FanotifyMark, _Mapping]]] = ...) -> None: ...

class Signalfd(_message.Message):
    __slots__ = ("sigmask",)
    SIGMASK_FIELD_NUMBER: _ClassVar[int]
    sigmask: int
    def __init__(self, sigmask: _Optional[int] = ...) -> None: ...

class Timerfd(_message.Message):
    __slots__ = ("clockid", "ticks", "settime_flags", "it_value_ns", "it_interval_ns")
    CLOCKID_FIELD_NUMBER: _ClassVar[int]
    TICKS_FIELD_NUMBER: _ClassVar[int]
    SETTIME_FLAGS_FIELD_NUMBER: _ClassVar[int]
    IT_VALUE_NS_FIELD_NUMBER: _ClassVar[int]
    IT_INTERVAL_NS_FIELD_NUMBER: _ClassVar[int]
    clockid: int
    ticks: int
    settime_flags: int
    it_value_ns: int
    it_interval_ns: int
    def __init__(self, clockid: _Optional[int] = ..., ticks: _Optional[int] = ..., settime_flags: _Optional[int] = ..., it_value_ns: _Optional[int] = ..., it_interval_ns: _Optional[int] = ...) -> None: ...

class Pidfd(_message.Message):
    __slots__ = ("pid", "ns_pids")
    PID_FIELD_NUMBER: _ClassVar[int]
    NS_PIDS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    ns_pids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, pid: _Optional[int] = ..., ns_pids: _Optional[_Iterable[int]] = ...) -> None: ...

class Memfd(_message.Message):
    __slots__ = ("name", "size", "seals", "hugetlb", "ghost")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SEALS_FIELD_NUMBER: _ClassVar[int]
    HUGETLB_FIELD_NUMBER: _ClassVar[int]
    GHOST_FIELD_NUMBER: _ClassVar[int]
    name: bytes
    size: int
    seals: int
    hugetlb: bool
    ghost: GhostRef
    def __init__(self, name: _Optional[bytes] = ..., size: _Optional[int] = ..., seals: _Optional[int] = ..., hugetlb: _Optional[bool] = ..., ghost: _Optional[_Union[GhostRef, _Mapping]] = ...) -> None: ...

class Tty(_message.Message):
    __slots__ = ("index", "is_master", "driver", "rdev_major", "rdev_minor")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IS_MASTER_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    RDEV_MAJOR_FIELD_NUMBER: _ClassVar[int]
    RDEV_MINOR_FIELD_NUMBER: _ClassVar[int]
    index: int
    is_master: bool
    driver: str
    rdev_major: int
    rdev_minor: int
    def __init__(self, index: _Optional[int] = ..., is_master: _Optional[bool] = ..., driver: _Optional[str] = ..., rdev_major: _Optional[int] = ..., rdev_minor: _Optional[int] = ...) -> None: ...

class IoUring(_message.Message):
    __slots__ = ("raw", "reason")
    RAW_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    raw: bytes
    reason: str
    def __init__(self, raw: _Optional[bytes] = ..., reason: _Optional[str] = ...) -> None: ...

class UnknownFile(_message.Message):
    __slots__ = ("raw", "reason")
    RAW_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    raw: bytes
    reason: str
    def __init__(self, raw: _Optional[bytes] = ..., reason: _Optional[str] = ...) -> None: ...

class Fd(_message.Message):
    __slots__ = ("fd", "flags", "pos", "mnt_id", "ino", "dev", "kind", "path", "deleted", "file_id", "locks", "owner_pid", "owner_type", "owner_signum", "extra", "file", "pipe", "socket", "eventfd", "epoll", "inotify", "fanotify", "signalfd", "timerfd", "pidfd", "memfd", "tty", "io_uring", "unknown", "nsfs", "unreadable")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FD_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    MNT_ID_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    OWNER_PID_FIELD_NUMBER: _ClassVar[int]
    OWNER_TYPE_FIELD_NUMBER: _ClassVar[int]
    OWNER_SIGNUM_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    SOCKET_FIELD_NUMBER: _ClassVar[int]
    EVENTFD_FIELD_NUMBER: _ClassVar[int]
    EPOLL_FIELD_NUMBER: _ClassVar[int]
    INOTIFY_FIELD_NUMBER: _ClassVar[int]
    FANOTIFY_FIELD_NUMBER: _ClassVar[int]
    SIGNALFD_FIELD_NUMBER: _ClassVar[int]
    TIMERFD_FIELD_NUMBER: _ClassVar[int]
    PIDFD_FIELD_NUMBER: _ClassVar[int]
    MEMFD_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    IO_URING_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    NSFS_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    fd: int
    flags: int
    pos: int
    mnt_id: int
    ino: int
    dev: int
    kind: FdKind
    path: bytes
    deleted: bool
    file_id: int
    locks: _containers.RepeatedCompositeFieldContainer[FileLock]
    owner_pid: int
    owner_type: OwnerType
    owner_signum: int
    extra: _containers.ScalarMap[str, str]
    file: RegularFile
    pipe: Pipe
    socket: SocketRef
    eventfd: Eventfd
    epoll: Epoll
    inotify: Inotify
    fanotify: Fanotify
    signalfd: Signalfd
    timerfd: Timerfd
    pidfd: Pidfd
    memfd: Memfd
    tty: Tty
    io_uring: IoUring
    unknown: UnknownFile
    nsfs: NsFile
    unreadable: _containers.RepeatedCompositeFieldContainer[_common_pb2.Unreadable]
    def __init__(self, fd: _Optional[int] = ..., flags: _Optional[int] = ..., pos: _Optional[int] = ..., mnt_id: _Optional[int] = ..., ino: _Optional[int] = ..., dev: _Optional[int] = ..., kind: _Optional[_Union[FdKind, str]] = ..., path: _Optional[bytes] = ..., deleted: _Optional[bool] = ..., file_id: _Optional[int] = ..., locks: _Optional[_Iterable[_Union[FileLock, _Mapping]]] = ..., owner_pid: _Optional[int] = ..., owner_type: _Optional[_Union[OwnerType, str]] = ..., owner_signum: _Optional[int] = ..., extra: _Optional[_Mapping[str, str]] = ..., file: _Optional[_Union[RegularFile, _Mapping]] = ..., pipe: _Optional[_Union[Pipe, _Mapping]] = ..., socket: _Optional[_Union[SocketRef, _Mapping]] = ..., eventfd: _Optional[_Union[Eventfd, _Mapping]] = ..., epoll: _Optional[_Union[Epoll, _Mapping]] = ..., inotify: _Optional[_Union[Inotify, _Mapping]] = ..., fanotify: _Optional[_Union[Fanotify, _Mapping]] = ..., signalfd: _Optional[_Union[Signalfd, _Mapping]] = ..., timerfd: _Optional[_Union[Timerfd, _Mapping]] = ..., pidfd: _Optional[_Union[Pidfd, _Mapping]] = ..., memfd: _Optional[_Union[Memfd, _Mapping]] = ..., tty: _Optional[_Union[Tty, _Mapping]] = ..., io_uring: _Optional[_Union[IoUring, _Mapping]] = ..., unknown: _Optional[_Union[UnknownFile, _Mapping]] = ..., nsfs: _Optional[_Union[NsFile, _Mapping]] = ..., unreadable: _Optional[_Iterable[_Union[_common_pb2.Unreadable, _Mapping]]] = ...) -> None: ...

class NsFile(_message.Message):
    __slots__ = ("type", "inode")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    type: str
    inode: int
    def __init__(self, type: _Optional[str] = ..., inode: _Optional[int] = ...) -> None: ...

class FdTable(_message.Message):
    __slots__ = ("pid", "fds", "vanished", "waiting_locks", "unreadable")
    PID_FIELD_NUMBER: _ClassVar[int]
    FDS_FIELD_NUMBER: _ClassVar[int]
    VANISHED_FIELD_NUMBER: _ClassVar[int]
    WAITING_LOCKS_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    pid: int
    fds: _containers.RepeatedCompositeFieldContainer[Fd]
    vanished: int
    waiting_locks: _containers.RepeatedCompositeFieldContainer[FileLock]
    unreadable: _containers.RepeatedCompositeFieldContainer[_common_pb2.Unreadable]
    def __init__(self, pid: _Optional[int] = ..., fds: _Optional[_Iterable[_Union[Fd, _Mapping]]] = ..., vanished: _Optional[int] = ..., waiting_locks: _Optional[_Iterable[_Union[FileLock, _Mapping]]] = ..., unreadable: _Optional[_Iterable[_Union[_common_pb2.Unreadable, _Mapping]]] = ...) -> None: ...

class GhostExtent(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class GhostFile(_message.Message):
    __slots__ = ("id", "size", "captured", "data", "extents", "data_bytes", "path", "dev", "ino", "unreadable")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXTENTS_FIELD_NUMBER: _ClassVar[int]
    DATA_BYTES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    id: int
    size: int
    captured: bool
    data: bytes
    extents: _containers.RepeatedCompositeFieldContainer[GhostExtent]
    data_bytes: int
    path: bytes
    dev: int
    ino: int
    unreadable: _containers.RepeatedCompositeFieldContainer[_common_pb2.Unreadable]
    def __init__(self, id: _Optional[int] = ..., size: _Optional[int] = ..., captured: _Optional[bool] = ..., data: _Optional[bytes] = ..., extents: _Optional[_Iterable[_Union[GhostExtent, _Mapping]]] = ..., data_bytes: _Optional[int] = ..., path: _Optional[bytes] = ..., dev: _Optional[int] = ..., ino: _Optional[int] = ..., unreadable: _Optional[_Iterable[_Union[_common_pb2.Unreadable, _Mapping]]] = ...) -> None: ...
