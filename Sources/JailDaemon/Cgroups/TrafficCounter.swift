import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Per-jail network bytes and packets on the shared stack (traffic.c): cgroup_skb programs on
/// the jail's cgroup v2 directory count every packet of the jail's own sockets, TCP and UDP,
/// IPv4 and IPv6, loopback included, into the jail's map, whose id the state file records
/// (`traffic=`). The programs are attached without a link, so they outlive the supervisor and
/// an adopting one reads the same counters; removing the cgroup frees them.
public enum NetworkCounters {
    /// Attaches the counting programs; nil (and one warning) where there is no cgroup v2 or the
    /// kernel refuses them: the jail then runs without network counters.
    static func attach(to cgroups: JailCgroups?) -> UInt32? {
        guard let directory = cgroups?.unifiedDirectory else { return nil }
        var id: UInt32 = 0
        var step: Int32 = 0
        guard cj_traffic_attach(directory, &id, &step) == 0 else {
            let reason = Errno(rawValue: errno).description
            _ = cj_traffic_detach(directory)  // a half attachment (ingress only) goes too
            let what = ["opening the cgroup", "creating the counter map", "loading the counting programs",
                        "attaching the counting programs"][max(0, min(3, Int(step) - 1))]
            log.warning("no network counters for this jail: \(what) (\(directory)) failed: \(reason)")
            return nil
        }
        return id
    }

    /// Detaches the counting programs (at stop, with the port filter).
    static func detach(from cgroups: JailCgroups?) {
        guard let directory = cgroups?.unifiedDirectory else { return }
        if cj_traffic_detach(directory) != 0 && errno != ENOENT {
            log.warning("cannot detach the network counters from \(directory): \(Errno(rawValue: errno))")
        }
    }

    /// The jail's counters since it started; nil when it has none (no `traffic=`, or its map is gone).
    public static func read(state: JailState) -> (rxBytes: UInt64, txBytes: UInt64, rxPackets: UInt64, txPackets: UInt64)? {
        guard let id = state.traffic else { return nil }
        var receive = cj_traffic_slot()
        var transmit = cj_traffic_slot()
        guard cj_traffic_read(id, &receive, &transmit) == 0 else { return nil }
        return (receive.bytes, transmit.bytes, receive.packets, transmit.packets)
    }
}
