import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// The BPF programs jaild attaches to a jail's cgroup v2 directory, and their maps: the port
// filter and the shared map of owned ports (CJail/ports.c, address.c), the network counters
// (CJail/traffic.c). Programs attached without a link outlive jaild; removing the cgroup
// frees them.

/// The step of an attachment that failed, with its error. What was attached before it is
/// detached again.
public enum CgroupProgramError: Error {
    /// The cgroup directory could not be opened (open).
    case cgroup(SystemError)
    /// A map could not be made (bpf(BPF_MAP_CREATE)).
    case map(SystemError)
    /// The kernel refused to load a program (bpf(BPF_PROG_LOAD)).
    case load(SystemError)
    /// A loaded program could not be attached (bpf(BPF_PROG_ATTACH)).
    case attach(SystemError)

    public var systemError: SystemError {
        switch self {
        case .cgroup(let error), .map(let error), .load(let error), .attach(let error): return error
        }
    }
}

/// Attaches to `directory` the post-bind check against the owned-ports `map` (IPv4 and IPv6),
/// with `bindFilter` the bind filter for `ranges` (protocol 6 TCP, 17 UDP), and with a plan that
/// has addresses or a loopback the address programs.
public func attachPortPrograms(to directory: String, map: Int32, ranges: [(protocol: Int32, low: UInt16, high: UInt16)],
                               bindFilter: Bool, plan: cj_address_plan) throws(CgroupProgramError) {
    let entries = ranges.map { cj_port_range(protocol: $0.protocol, low: $0.low, high: $0.high) }
    var step: Int32 = 0
    var plan = plan
    let rc = entries.withUnsafeBufferPointer {
        cj_ports_attach(directory, map, $0.baseAddress, Int32($0.count), bindFilter ? 1 : 0, &plan, &step)
    }
    guard rc != 0 else { return }
    let errno = Errno(rawValue: Glibc.errno)
    // What was attached before the failing step goes too; it is not the failure to report.
    _ = cj_ports_detach(directory)
    switch step {
    case 1: throw .cgroup(SystemError("open", path: directory, errno: errno))
    case 2: throw .load(SystemError("bpf(BPF_PROG_LOAD)", errno: errno))
    default: throw .attach(SystemError("bpf(BPF_PROG_ATTACH)", path: directory, errno: errno))
    }
}

/// Detaches the port programs from `directory` (none attached is no failure).
public func detachPortPrograms(from directory: String) throws(SystemError) {
    try syscall("bpf(BPF_PROG_DETACH)", path: directory) { cj_ports_detach(directory) }
}

/// The owned-ports map by the id jaild recorded, checked to be that map; nil when it is gone
/// or the id is another map's (or cannot be opened): the caller then looks for it by name.
public func ownedPortsMap(id: UInt32) -> Int32? {
    let fd = cj_owned_ports_by_id(id)
    return fd >= 0 ? fd : nil
}

/// The owned-ports map found by name or, with `create`, made (`isNew`); nil when there is
/// none and `create` is false.
public func openOwnedPortsMap(create: Bool) throws(SystemError) -> (fd: Int32, isNew: Bool)? {
    let found = cj_owned_ports_open(0)
    if found >= 0 { return (found, false) }
    guard Glibc.errno == ENOENT else { throw SystemError.last("bpf(BPF_MAP_GET_FD_BY_ID)") }
    guard create else { return nil }
    return (try syscall("bpf(BPF_MAP_CREATE)") { cj_owned_ports_open(1) }, true)
}

/// The id of the owned-ports map `fd`, 0 when it is not that map.
public func ownedPortsMapID(_ fd: Int32) -> UInt32 {
    cj_bpf_map_id(fd)
}

/// Adds `keys`, owned by `owner` (a cgroup id), where no one holds them: who holds each key
/// afterwards.
public func addOwnedPorts(_ keys: [cj_owned_key], owner: UInt64, map: Int32) throws(SystemError) -> [UInt64] {
    var holders = [UInt64](repeating: 0, count: keys.count)
    let rc = keys.withUnsafeBufferPointer { k in
        holders.withUnsafeMutableBufferPointer { h in cj_owned_ports_add(map, k.baseAddress, Int32(k.count), owner, h.baseAddress) }
    }
    if rc != 0 { throw SystemError.last("bpf(BPF_MAP_UPDATE_ELEM)") }
    return holders
}

/// Makes the map hold exactly `keys`, `owners[i]` owning `keys[i]`.
public func syncOwnedPorts(_ keys: [cj_owned_key], owners: [UInt64], map: Int32) throws(SystemError) {
    let rc = keys.withUnsafeBufferPointer { k in
        owners.withUnsafeBufferPointer { o in cj_owned_ports_sync(map, k.baseAddress, o.baseAddress, Int32(k.count)) }
    }
    if rc != 0 { throw SystemError.last("bpf(BPF_MAP_UPDATE_ELEM)") }
}

/// A new counter map and the ingress and egress programs that fill it, attached to
/// `directory`: the map's id.
public func attachTrafficCounters(to directory: String) throws(CgroupProgramError) -> UInt32 {
    var id: UInt32 = 0
    var step: Int32 = 0
    guard cj_traffic_attach(directory, &id, &step) != 0 else { return id }
    let errno = Errno(rawValue: Glibc.errno)
    // A half attachment (ingress only) goes too; it is not the failure to report.
    _ = cj_traffic_detach(directory)
    switch step {
    case 1: throw .cgroup(SystemError("open", path: directory, errno: errno))
    case 2: throw .map(SystemError("bpf(BPF_MAP_CREATE)", errno: errno))
    case 3: throw .load(SystemError("bpf(BPF_PROG_LOAD)", errno: errno))
    default: throw .attach(SystemError("bpf(BPF_PROG_ATTACH)", path: directory, errno: errno))
    }
}

/// Detaches the counting programs from `directory`.
public func detachTrafficCounters(from directory: String) throws(SystemError) {
    try syscall("bpf(BPF_PROG_DETACH)", path: directory) { cj_traffic_detach(directory) }
}

/// The counters of the map `id` (receive, transmit: bytes and packets); nil when they cannot
/// be read: no such map any more (its cgroup is gone), or not a jail's counters.
public func trafficCounters(mapID id: UInt32) -> (receive: cj_traffic_slot, transmit: cj_traffic_slot)? {
    var receive = cj_traffic_slot()
    var transmit = cj_traffic_slot()
    guard cj_traffic_read(id, &receive, &transmit) == 0 else { return nil }
    return (receive, transmit)
}
