import CJail
import JailSystem
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
        do { return try attachTrafficCounters(to: directory) } catch {
            let what = switch error {
            case .cgroup: "opening the cgroup"
            case .map: "creating the counter map"
            case .load: "loading the counting programs"
            case .attach: "attaching the counting programs"
            }
            log.warning("no network counters for this jail: \(what) (\(directory)) failed: \(error.systemError.errno)")
            return nil
        }
    }

    /// Detaches the counting programs (at stop, with the port filter).
    static func detach(from cgroups: JailCgroups?) {
        guard let directory = cgroups?.unifiedDirectory else { return }
        do { try detachTrafficCounters(from: directory) } catch {
            // ENOENT: the cgroup or its programs are gone already, which is what a detach is for.
            if error.errno != .noSuchFileOrDirectory {
                log.warning("cannot detach the network counters from \(directory): \(error.errno)")
            }
        }
    }

    /// The jail's counters since it started; nil when it has none (no `traffic=`, or its map is gone).
    public static func read(state: JailState) -> (rxBytes: UInt64, txBytes: UInt64, rxPackets: UInt64, txPackets: UInt64)? {
        guard let id = state.traffic else { return nil }
        guard let (receive, transmit) = trafficCounters(mapID: id) else { return nil }
        return (receive.bytes, transmit.bytes, receive.packets, transmit.packets)
    }
}
