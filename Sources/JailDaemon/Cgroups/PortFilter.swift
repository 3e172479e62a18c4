import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Puts `--ports` into force: the bind filter of ports.c on the jail's program cgroup in the
/// unified hierarchy. Without cgroup v2 or cgroup-BPF the jail does not start: a jail that
/// silently allows every port would be worse than none.
public enum PortFilter {
    static func attach(_ ports: PortSet, to cgroups: JailCgroups?) throws(JailError) {
        guard let unified = cgroups?.unifiedDirectory else {
            throw .startFailed("--ports needs cgroup v2, which is not mounted on this host (mount -t cgroup2 none /sys/fs/cgroup)")
        }
        // The jail's whole cgroup: its programs live in `programs` or, without limits, in `init`.
        let directory = unified
        let ranges = ports.ranges.map { cj_port_range(protocol: $0.protocolNumber, low: $0.low, high: $0.high) }
        var step: Int32 = 0
        let rc = ranges.withUnsafeBufferPointer { cj_ports_attach(directory, $0.baseAddress, Int32($0.count), &step) }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            switch step {
            case 1: throw .startFailed("--ports: cannot open cgroup \(directory): \(reason)")
            case 2: throw .startFailed("--ports: this kernel refused the bind filter (cgroup-BPF): \(reason)")
            default: throw .startFailed("--ports: cannot attach the bind filter to \(directory): \(reason)")
            }
        }
    }

    static func detach(from cgroups: JailCgroups?) {
        guard let unified = cgroups?.unifiedDirectory else { return }
        if cj_ports_detach(unified) != 0 {
            log.warning("cannot detach the port filter from \(unified): \(String(cString: strerror(errno)))")
        }
    }

    /// Other running jails whose ports overlap: a warning each, or an error when exclusive.
    public static func checkOverlap(_ configuration: JailConfiguration, ownSocket: String) throws(JailError) {
        guard let ports = configuration.ports else { return }
        for (state, alive) in JailState.all() where alive && state.socket != ownSocket && !state.ports.isEmpty {
            guard let theirs = try? PortSet.parse(state.ports) else { continue }
            let shared = ports.overlap(with: theirs)
            guard !shared.isEmpty else { continue }
            let text = PortSet(ranges: shared).description
            if configuration.portsExclusive {
                throw .startFailed("ports \(text) belong to the jail on \(state.socket) (--ports-exclusive)")
            }
            JailLogHandler.emitToTerminal("warning: ports \(text) are also the ports of the jail on \(state.socket)")
        }
    }
}
