from criu_model.images.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Thread(_message.Message):
    __slots__ = ("tid", "ns_tids", "comm", "state", "sig_blocked", "sig_pending", "sched_policy", "nice", "rt_priority", "utime_ticks", "stime_ticks")
    TID_FIELD_NUMBER: _ClassVar[int]
    NS_TIDS_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SIG_BLOCKED_FIELD_NUMBER: _ClassVar[int]
    SIG_PENDING_FIELD_NUMBER: _ClassVar[int]
    SCHED_POLICY_FIELD_NUMBER: _ClassVar[int]
    NICE_FIELD_NUMBER: _ClassVar[int]
    RT_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    UTIME_TICKS_FIELD_NUMBER: _ClassVar[int]
    STIME_TICKS_FIELD_NUMBER: _ClassVar[int]
    tid: int
    ns_tids: _containers.RepeatedScalarFieldContainer[int]
    comm: bytes
    state: str
    sig_blocked: int
    sig_pending: int
    sched_policy: int
    nice: int
    rt_priority: int
    utime_ticks: int
    stime_ticks: int
    def __init__(self, tid: _Optional[int] = ..., ns_tids: _Optional[_Iterable[int]] = ..., comm: _Optional[bytes] = ..., state: _Optional[str] = ..., sig_blocked: _Optional[int] = ..., sig_pending: _Optional[int] = ..., sched_policy: _Optional[int] = ..., nice: _Optional[int] = ..., rt_priority: _Optional[int] = ..., utime_ticks: _Optional[int] = ..., stime_ticks: _Optional[int] = ...) -> None: ...

class Creds(_message.Message):
    __slots__ = ("uids", "gids", "groups", "cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb", "no_new_privs", "securebits", "seccomp_mode", "seccomp_filters")
    UIDS_FIELD_NUMBER: _ClassVar[int]
    GIDS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    CAP_INH_FIELD_NUMBER: _ClassVar[int]
    CAP_PRM_FIELD_NUMBER: _ClassVar[int]
    CAP_EFF_FIELD_NUMBER: _ClassVar[int]
    CAP_BND_FIELD_NUMBER: _ClassVar[int]
    CAP_AMB_FIELD_NUMBER: _ClassVar[int]
    NO_NEW_PRIVS_FIELD_NUMBER: _ClassVar[int]
    SECUREBITS_FIELD_NUMBER: _ClassVar[int]
    SECCOMP_MODE_FIELD_NUMBER: _ClassVar[int]
    SECCOMP_FILTERS_FIELD_NUMBER: _ClassVar[int]
    uids: _containers.RepeatedScalarFieldContainer[int]
    gids: _containers.RepeatedScalarFieldContainer[int]
    groups: _containers.RepeatedScalarFieldContainer[int]
    cap_inh: int
    cap_prm: int
    cap_eff: int
    cap_bnd: int
    cap_amb: int
    no_new_privs: bool
    securebits: int
    seccomp_mode: int
    seccomp_filters: int
    def __init__(self, uids: _Optional[_Iterable[int]] = ..., gids: _Optional[_Iterable[int]] = ..., groups: _Optional[_Iterable[int]] = ..., cap_inh: _Optional[int] = ..., cap_prm: _Optional[int] = ..., cap_eff: _Optional[int] = ..., cap_bnd: _Optional[int] = ..., cap_amb: _Optional[int] = ..., no_new_privs: _Optional[bool] = ..., securebits: _Optional[int] = ..., seccomp_mode: _Optional[int] = ..., seccomp_filters: _Optional[int] = ...) -> None: ...

class Rlimit(_message.Message):
    __slots__ = ("resource", "soft", "hard")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    HARD_FIELD_NUMBER: _ClassVar[int]
    resource: str
    soft: int
    hard: int
    def __init__(self, resource: _Optional[str] = ..., soft: _Optional[int] = ..., hard: _Optional[int] = ...) -> None: ...

class PosixTimer(_message.Message):
    __slots__ = ("id", "signal", "sigval", "notify", "notify_tid", "clock_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SIGVAL_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_TID_FIELD_NUMBER: _ClassVar[int]
    CLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    signal: int
    sigval: int
    notify: str
    notify_tid: int
    clock_id: int
    def __init__(self, id: _Optional[int] = ..., signal: _Optional[int] = ..., sigval: _Optional[int] = ..., notify: _Optional[str] = ..., notify_tid: _Optional[int] = ..., clock_id: _Optional[int] = ...) -> None: ...

class Namespace(_message.Message):
    __slots__ = ("type", "inode", "dev", "owner_user", "parent")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    OWNER_USER_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    type: str
    inode: int
    dev: int
    owner_user: int
    parent: int
    def __init__(self, type: _Optional[str] = ..., inode: _Optional[int] = ..., dev: _Optional[int] = ..., owner_user: _Optional[int] = ..., parent: _Optional[int] = ...) -> None: ...

class CgroupMembership(_message.Message):
    __slots__ = ("hierarchy_id", "controllers", "path")
    HIERARCHY_ID_FIELD_NUMBER: _ClassVar[int]
    CONTROLLERS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    hierarchy_id: int
    controllers: str
    path: bytes
    def __init__(self, hierarchy_id: _Optional[int] = ..., controllers: _Optional[str] = ..., path: _Optional[bytes] = ...) -> None: ...

class TaskShares(_message.Message):
    __slots__ = ("files", "fs", "sighand", "vm")
    FILES_FIELD_NUMBER: _ClassVar[int]
    FS_FIELD_NUMBER: _ClassVar[int]
    SIGHAND_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    files: int
    fs: int
    sighand: int
    vm: int
    def __init__(self, files: _Optional[int] = ..., fs: _Optional[int] = ..., sighand: _Optional[int] = ..., vm: _Optional[int] = ...) -> None: ...

class Process(_message.Message):
    __slots__ = ("pid", "ppid", "pgid", "sid", "ns_pids", "ns_pgids", "ns_sids", "start_time", "comm", "state", "cmdline", "environ", "exe", "cwd", "root", "umask", "creds", "personality", "rlimits", "sig_ignored", "sig_caught", "sig_shared_pending", "timers", "sched_policy", "nice", "rt_priority", "namespaces", "cgroups", "threads", "flags", "exit_signal", "exit_code", "utime_ticks", "stime_ticks", "vsize", "rss_pages", "is_kthread", "shares", "tty_nr", "tpgid", "unreadable")
    PID_FIELD_NUMBER: _ClassVar[int]
    PPID_FIELD_NUMBER: _ClassVar[int]
    PGID_FIELD_NUMBER: _ClassVar[int]
    SID_FIELD_NUMBER: _ClassVar[int]
    NS_PIDS_FIELD_NUMBER: _ClassVar[int]
    NS_PGIDS_FIELD_NUMBER: _ClassVar[int]
    NS_SIDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CMDLINE_FIELD_NUMBER: _ClassVar[int]
    ENVIRON_FIELD_NUMBER: _ClassVar[int]
    EXE_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    UMASK_FIELD_NUMBER: _ClassVar[int]
    CREDS_FIELD_NUMBER: _ClassVar[int]
    PERSONALITY_FIELD_NUMBER: _ClassVar[int]
    RLIMITS_FIELD_NUMBER: _ClassVar[int]
    SIG_IGNORED_FIELD_NUMBER: _ClassVar[int]
    SIG_CAUGHT_FIELD_NUMBER: _ClassVar[int]
    SIG_SHARED_PENDING_FIELD_NUMBER: _ClassVar[int]
    TIMERS_FIELD_NUMBER: _ClassVar[int]
    SCHED_POLICY_FIELD_NUMBER: _ClassVar[int]
    NICE_FIELD_NUMBER: _ClassVar[int]
    RT_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    CGROUPS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    EXIT_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    UTIME_TICKS_FIELD_NUMBER: _ClassVar[int]
    STIME_TICKS_FIELD_NUMBER: _ClassVar[int]
    VSIZE_FIELD_NUMBER: _ClassVar[int]
    RSS_PAGES_FIELD_NUMBER: _ClassVar[int]
    IS_KTHREAD_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    TTY_NR_FIELD_NUMBER: _ClassVar[int]
    TPGID_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    pid: int
    ppid: int
    pgid: int
    sid: int
    ns_pids: _containers.RepeatedScalarFieldContainer[int]
    ns_pgids: _containers.RepeatedScalarFieldContainer[int]
    ns_sids: _containers.RepeatedScalarFieldContainer[int]
    start_time: int
    comm: bytes
    state: str
    cmdline: _containers.RepeatedScalarFieldContainer[bytes]
    environ: _containers.RepeatedScalarFieldContainer[bytes]
    exe: _common_pb2.PathRef
    cwd: _common_pb2.PathRef
    root: _common_pb2.PathRef
    umask: int
    creds: Creds
    personality: int
    rlimits: _containers.RepeatedCompositeFieldContainer[Rlimit]
    sig_ignored: int
    sig_caught: int
    sig_shared_pending: int
    timers: _containers.RepeatedCompositeFieldContainer[PosixTimer]
    sched_policy: int
    nice: int
    rt_priority: int
    namespaces: _containers.RepeatedCompositeFieldContainer[Namespace]
    cgroups: _containers.RepeatedCompositeFieldContainer[CgroupMembership]
    threads: _containers.RepeatedCompositeFieldContainer[Thread]
    flags: int
    exit_signal: int
    exit_code: int
    utime_ticks: int
    stime_ticks: int
    vsize: int
    rss_pages: int
    is_kthread: bool
    shares: TaskShares
    tty_nr: int
    tpgid: int
    unreadable: _containers.RepeatedCompositeFieldContainer[_common_pb2.Unreadable]
    def __init__(self, pid: _Optional[int] = ..., ppid: _Optional[int] = ..., pgid: _Optional[int] = ..., sid: _Optional[int] = ..., ns_pids: _Optional[_Iterable[int]] = ..., ns_pgids: _Optional[_Iterable[int]] = ..., ns_sids: _Optional[_Iterable[int]] = ..., start_time: _Optional[int] = ..., comm: _Optional[bytes] = ..., state: _Optional[str] = ..., cmdline: _Optional[_Iterable[bytes]] = ..., environ: _Optional[_Iterable[bytes]] = ..., exe: _Optional[_Union[_common_pb2.PathRef, _Mapping]] = ..., cwd: _Optional[_Union[_common_pb2.PathRef, _Mapping]] = ..., root: _Optional[_Union[_common_pb2.PathRef, _Mapping]] = ..., umask: _Optional[int] = ..., creds: _Optional[_Union[Creds, _Mapping]] = ..., personality: _Optional[int] = ..., rlimits: _Optional[_Iterable[_Union[Rlimit, _Mapping]]] = ..., sig_ignored: _Optional[int] = ..., sig_caught: _Optional[int] = ..., sig_shared_pending: _Optional[int] = ..., timers: _Optional[_Iterable[_Union[PosixTimer, _Mapping]]] = ..., sched_policy: _Optional[int] = ..., nice: _Optional[int] = ..., rt_priority: _Optional[int] = ..., namespaces: _Optional[_Iterable[_Union[Namespace, _Mapping]]] = ..., cgroups: _Optional[_Iterable[_Union[CgroupMembership, _Mapping]]] = ..., threads: _Optional[_Iterable[_Union[Thread, _Mapping]]] = ..., flags: _Optional[int] = ..., exit_signal: _Optional[int] = ..., exit_code: _Optional[int] = ..., utime_ticks: _Optional[int] = ..., stime_ticks: _Optional[int] = ..., vsize: _Optional[int] = ..., rss_pages: _Optional[int] = ..., is_kthread: _Optional[bool] = ..., shares: _Optional[_Union[TaskShares, _Mapping]] = ..., tty_nr: _Optional[int] = ..., tpgid: _Optional[int] = ..., unreadable: _Optional[_Iterable[_Union[_common_pb2.Unreadable, _Mapping]]] = ...) -> None: ...
