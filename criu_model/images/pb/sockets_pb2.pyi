from criu_model.images.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SocketFamily(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOCKET_FAMILY_UNSPECIFIED: _ClassVar[SocketFamily]
    FAMILY_UNIX: _ClassVar[SocketFamily]
    FAMILY_INET: _ClassVar[SocketFamily]
    FAMILY_INET6: _ClassVar[SocketFamily]
    FAMILY_NETLINK: _ClassVar[SocketFamily]
    FAMILY_PACKET: _ClassVar[SocketFamily]
SOCKET_FAMILY_UNSPECIFIED: SocketFamily
FAMILY_UNIX: SocketFamily
FAMILY_INET: SocketFamily
FAMILY_INET6: SocketFamily
FAMILY_NETLINK: SocketFamily
FAMILY_PACKET: SocketFamily

class SkMemInfo(_message.Message):
    __slots__ = ("rmem_alloc", "rcvbuf", "wmem_alloc", "sndbuf", "fwd_alloc", "wmem_queued", "optmem", "backlog", "drops")
    RMEM_ALLOC_FIELD_NUMBER: _ClassVar[int]
    RCVBUF_FIELD_NUMBER: _ClassVar[int]
    WMEM_ALLOC_FIELD_NUMBER: _ClassVar[int]
    SNDBUF_FIELD_NUMBER: _ClassVar[int]
    FWD_ALLOC_FIELD_NUMBER: _ClassVar[int]
    WMEM_QUEUED_FIELD_NUMBER: _ClassVar[int]
    OPTMEM_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    DROPS_FIELD_NUMBER: _ClassVar[int]
    rmem_alloc: int
    rcvbuf: int
    wmem_alloc: int
    sndbuf: int
    fwd_alloc: int
    wmem_queued: int
    optmem: int
    backlog: int
    drops: int
    def __init__(self, rmem_alloc: _Optional[int] = ..., rcvbuf: _Optional[int] = ..., wmem_alloc: _Optional[int] = ..., sndbuf: _Optional[int] = ..., fwd_alloc: _Optional[int] = ..., wmem_queued: _Optional[int] = ..., optmem: _Optional[int] = ..., backlog: _Optional[int] = ..., drops: _Optional[int] = ...) -> None: ...

class UnixSocket(_message.Message):
    __slots__ = ("name", "abstract", "peer_inode", "pending", "backlog", "vfs_ino", "vfs_dev")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ABSTRACT_FIELD_NUMBER: _ClassVar[int]
    PEER_INODE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    VFS_INO_FIELD_NUMBER: _ClassVar[int]
    VFS_DEV_FIELD_NUMBER: _ClassVar[int]
    name: bytes
    abstract: bool
    peer_inode: int
    pending: _containers.RepeatedScalarFieldContainer[int]
    backlog: int
    vfs_ino: int
    vfs_dev: int
    def __init__(self, name: _Optional[bytes] = ..., abstract: _Optional[bool] = ..., peer_inode: _Optional[int] = ..., pending: _Optional[_Iterable[int]] = ..., backlog: _Optional[int] = ..., vfs_ino: _Optional[int] = ..., vfs_dev: _Optional[int] = ...) -> None: ...

class TcpInfo(_message.Message):
    __slots__ = ("state", "ca_state", "retransmits", "probes", "backoff", "options", "snd_wscale", "rcv_wscale", "rto_us", "mss", "rcv_mss", "unacked", "lost", "retrans", "pmtu", "rtt_us", "rttvar_us", "snd_cwnd", "advmss", "total_retrans")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CA_STATE_FIELD_NUMBER: _ClassVar[int]
    RETRANSMITS_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SND_WSCALE_FIELD_NUMBER: _ClassVar[int]
    RCV_WSCALE_FIELD_NUMBER: _ClassVar[int]
    RTO_US_FIELD_NUMBER: _ClassVar[int]
    MSS_FIELD_NUMBER: _ClassVar[int]
    RCV_MSS_FIELD_NUMBER: _ClassVar[int]
    UNACKED_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    RETRANS_FIELD_NUMBER: _ClassVar[int]
    PMTU_FIELD_NUMBER: _ClassVar[int]
    RTT_US_FIELD_NUMBER: _ClassVar[int]
    RTTVAR_US_FIELD_NUMBER: _ClassVar[int]
    SND_CWND_FIELD_NUMBER: _ClassVar[int]
    ADVMSS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_RETRANS_FIELD_NUMBER: _ClassVar[int]
    state: int
    ca_state: int
    retransmits: int
    probes: int
    backoff: int
    options: int
    snd_wscale: int
    rcv_wscale: int
    rto_us: int
    mss: int
    rcv_mss: int
    unacked: int
    lost: int
    retrans: int
    pmtu: int
    rtt_us: int
    rttvar_us: int
    snd_cwnd: int
    advmss: int
    total_retrans: int
    def __init__(self, state: _Optional[int] = ..., ca_state: _Optional[int] = ..., retransmits: _Optional[int] = ..., probes: _Optional[int] = ..., backoff: _Optional[int] = ..., options: _Optional[int] = ..., snd_wscale: _Optional[int] = ..., rcv_wscale: _Optional[int] = ..., rto_us: _Optional[int] = ..., mss: _Optional[int] = ..., rcv_mss: _Optional[int] = ..., unacked: _Optional[int] = ..., lost: _Optional[int] = ..., retrans: _Optional[int] = ..., pmtu: _Optional[int] = ..., rtt_us: _Optional[int] = ..., rttvar_us: _Optional[int] = ..., snd_cwnd: _Optional[int] = ..., advmss: _Optional[int] = ..., total_retrans: _Optional[int] = ...) -> None: ...

class InetSocket(_message.Message):
    __slots__ = ("src", "sport", "dst", "dport", "protocol", "tcp_info", "ifindex", "v6only", "retransmits", "timer")
    SRC_FIELD_NUMBER: _ClassVar[int]
    SPORT_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    DPORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TCP_INFO_FIELD_NUMBER: _ClassVar[int]
    IFINDEX_FIELD_NUMBER: _ClassVar[int]
    V6ONLY_FIELD_NUMBER: _ClassVar[int]
    RETRANSMITS_FIELD_NUMBER: _ClassVar[int]
    TIMER_FIELD_NUMBER: _ClassVar[int]
    src: str
    sport: int
    dst: str
    dport: int
    protocol: int
    tcp_info: TcpInfo
    ifindex: int
    v6only: bool
    retransmits: int
    timer: int
    def __init__(self, src: _Optional[str] = ..., sport: _Optional[int] = ..., dst: _Optional[str] = ..., dport: _Optional[int] = ..., protocol: _Optional[int] = ..., tcp_info: _Optional[_Union[TcpInfo, _Mapping]] = ..., ifindex: _Optional[int] = ..., v6only: _Optional[bool] = ..., retransmits: _Optional[int] = ..., timer: _Optional[int] = ...) -> None: ...

class NetlinkSocket(_message.Message):
    __slots__ = ("protocol", "portid", "dst_portid", "dst_group", "groups", "flags")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORTID_FIELD_NUMBER: _ClassVar[int]
    DST_PORTID_FIELD_NUMBER: _ClassVar[int]
    DST_GROUP_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    protocol: int
    portid: int
    dst_portid: int
    dst_group: int
    groups: _containers.RepeatedScalarFieldContainer[int]
    flags: int
    def __init__(self, protocol: _Optional[int] = ..., portid: _Optional[int] = ..., dst_portid: _Optional[int] = ..., dst_group: _Optional[int] = ..., groups: _Optional[_Iterable[int]] = ..., flags: _Optional[int] = ...) -> None: ...

class PacketRing(_message.Message):
    __slots__ = ("block_size", "block_nr", "frame_size", "frame_nr", "retire_tmo", "sizeof_priv", "features")
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NR_FIELD_NUMBER: _ClassVar[int]
    FRAME_SIZE_FIELD_NUMBER: _ClassVar[int]
    FRAME_NR_FIELD_NUMBER: _ClassVar[int]
    RETIRE_TMO_FIELD_NUMBER: _ClassVar[int]
    SIZEOF_PRIV_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    block_size: int
    block_nr: int
    frame_size: int
    frame_nr: int
    retire_tmo: int
    sizeof_priv: int
    features: int
    def __init__(self, block_size: _Optional[int] = ..., block_nr: _Optional[int] = ..., frame_size: _Optional[int] = ..., frame_nr: _Optional[int] = ..., retire_tmo: _Optional[int] = ..., sizeof_priv: _Optional[int] = ..., features: _Optional[int] = ...) -> None: ...

class PacketMclist(_message.Message):
    __slots__ = ("ifindex", "count", "type", "addr")
    IFINDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    ifindex: int
    count: int
    type: int
    addr: bytes
    def __init__(self, ifindex: _Optional[int] = ..., count: _Optional[int] = ..., type: _Optional[int] = ..., addr: _Optional[bytes] = ...) -> None: ...

class PacketSocket(_message.Message):
    __slots__ = ("protocol", "ifindex", "version", "reserve", "copy_thresh", "tstamp", "flags", "fanout", "mclist", "rx_ring", "tx_ring", "filter")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    IFINDEX_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    COPY_THRESH_FIELD_NUMBER: _ClassVar[int]
    TSTAMP_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    FANOUT_FIELD_NUMBER: _ClassVar[int]
    MCLIST_FIELD_NUMBER: _ClassVar[int]
    RX_RING_FIELD_NUMBER: _ClassVar[int]
    TX_RING_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    protocol: int
    ifindex: int
    version: int
    reserve: int
    copy_thresh: int
    tstamp: int
    flags: int
    fanout: int
    mclist: _containers.RepeatedCompositeFieldContainer[PacketMclist]
    rx_ring: PacketRing
    tx_ring: PacketRing
    filter: bytes
    def __init__(self, protocol: _Optional[int] = ..., ifindex: _Optional[int] = ..., version: _Optional[int] = ..., reserve: _Optional[int] = ..., copy_thresh: _Optional[int] = ..., tstamp: _Optional[int] = ..., flags: _Optional[int] = ..., fanout: _Optional[int] = ..., mclist: _Optional[_Iterable[_Union[PacketMclist, _Mapping]]] = ..., rx_ring: _Optional[_Union[PacketRing, _Mapping]] = ..., tx_ring: _Optional[_Union[PacketRing, _Mapping]] = ..., filter: _Optional[bytes] = ...) -> None: ...

class Socket(_message.Message):
    __slots__ = ("inode", "family", "type", "state", "rqueue", "wqueue", "cookie", "uid", "shutdown", "meminfo", "unix", "inet", "netlink", "packet", "raw_attrs", "unreadable")
    class RawAttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: bytes
        def __init__(self, key: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...
    INODE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RQUEUE_FIELD_NUMBER: _ClassVar[int]
    WQUEUE_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    MEMINFO_FIELD_NUMBER: _ClassVar[int]
    UNIX_FIELD_NUMBER: _ClassVar[int]
    INET_FIELD_NUMBER: _ClassVar[int]
    NETLINK_FIELD_NUMBER: _ClassVar[int]
    PACKET_FIELD_NUMBER: _ClassVar[int]
    RAW_ATTRS_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    inode: int
    family: SocketFamily
    type: int
    state: int
    rqueue: int
    wqueue: int
    cookie: int
    uid: int
    shutdown: int
    meminfo: SkMemInfo
    unix: UnixSocket
    inet: InetSocket
    netlink: NetlinkSocket
    packet: PacketSocket
    raw_attrs: _containers.ScalarMap[int, bytes]
    unreadable: _containers.RepeatedCompositeFieldContainer[_common_pb2.Unreadable]
    def __init__(self, inode: _Optional[int] = ..., family: _Optional[_Union[SocketFamily, str]] = ..., type: _Optional[int] = ..., state: _Optional[int] = ..., rqueue: _Optional[int] = ..., wqueue: _Optional[int] = ..., cookie: _Optional[int] = ..., uid: _Optional[int] = ..., shutdown: _Optional[int] = ..., meminfo: _Optional[_Union[SkMemInfo, _Mapping]] = ..., unix: _Optional[_Union[UnixSocket, _Mapping]] = ..., inet: _Optional[_Union[InetSocket, _Mapping]] = ..., netlink: _Optional[_Union[NetlinkSocket, _Mapping]] = ..., packet: _Optional[_Union[PacketSocket, _Mapping]] = ..., raw_attrs: _Optional[_Mapping[int, bytes]] = ..., unreadable: _Optional[_Iterable[_Union[_common_pb2.Unreadable, _Mapping]]] = ...) -> None: ...

class SocketFamilyRun(_message.Message):
    __slots__ = ("name", "collected", "reason", "count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    collected: bool
    reason: str
    count: int
    def __init__(self, name: _Optional[str] = ..., collected: _Optional[bool] = ..., reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...
