import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The owned ports in `net.ipv4.ip_local_reserved_ports` (it covers IPv6, TCP and UDP alike):
/// the kernel then never picks one by itself — not for bind(0), nor for the source port of a
/// connect or of a UDP sendto, which run no bind hook a BPF program could check. Explicit binds
/// (the owner's) still work. What the administrator reserved stays; what jaild added is
/// recorded in /run/jail/ports/reserved and taken back when no jail owns it any more. Called
/// under PortFilter's lock, at every start and stop.
enum ReservedPorts {
    static let sysctl = "/proc/sys/net/ipv4/ip_local_reserved_ports"
    static let addedPath = "/run/jail/ports/reserved"

    /// The new reserved list and what of it is jaild's, from the list now, what jaild had
    /// added before, and the ports the jails own now.
    static func plan(current: Set<UInt16>, previouslyAdded: Set<UInt16>,
                     owned: Set<UInt16>) -> (reserved: Set<UInt16>, added: Set<UInt16>) {
        let administrators = current.subtracting(previouslyAdded)
        return (administrators.union(owned), owned.subtracting(administrators))
    }

    /// "8080,9000-9100" (the kernel's format) to a set; nil if it is not that.
    static func parse(_ text: String) -> Set<UInt16>? {
        var ports: Set<UInt16> = []
        for item in text.split(whereSeparator: { $0 == "," || $0 == "\n" || $0 == " " }) {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = UInt16(bounds[0]), let high = UInt16(bounds.last!),
                  low <= high else { return nil }
            ports.formUnion(low...high)
        }
        return ports
    }

    static func format(_ ports: Set<UInt16>) -> String {
        var items: [String] = []
        var sorted = ports.sorted()[...]
        while let low = sorted.popFirst() {
            var high = low
            while let next = sorted.first, next == high &+ 1 { high = sorted.removeFirst() }
            items.append(low == high ? "\(low)" : "\(low)-\(high)")
        }
        return items.joined(separator: ",")
    }

    /// One start's ports added to what jaild reserved before (no other jail's record read).
    static func include(_ ports: Set<UInt16>) throws(JailError) {
        try update(owned: recorded().union(ports))
    }

    /// Throws when the record of what jaild added cannot be kept: a port reserved without its
    /// record would stay reserved for ever. The record is written before the sysctl grows and
    /// after it shrinks, so it always holds at least what jaild has added.
    static func update(owned: Set<UInt16>) throws(JailError) {
        guard let currentText = try? readText(sysctl), let current = parse(currentText) else {
            if !owned.isEmpty { log.warning("cannot read \(sysctl): the owned ports are not reserved from the kernel's own choice") }
            return
        }
        warnIfCrowded(owned)
        let previous = try recorded()
        let (reserved, added) = plan(current: current, previouslyAdded: previous, owned: owned)
        let before = previous.union(added)
        if before != previous { try record(before) }
        if reserved != current {
            do throws(SystemError) { try writeKernelFile(sysctl, format(reserved) + "\n") } catch {
                return log.warning("cannot reserve the owned ports in \(sysctl): \(error)")
            }
        }
        if added != before { try record(added) }
    }

    /// What jaild has added, from its record (no file: nothing). A record that cannot be read
    /// is an error, not "nothing": taken for nothing, its ports would stay reserved for ever.
    static func recorded() throws(JailError) -> Set<UInt16> {
        let text: String
        do { text = try readText(addedPath) } catch {
            if error.errno == .noSuchFileOrDirectory { return [] }
            throw .failed("cannot read the record of the ports jaild reserved, \(addedPath)", error)
        }
        guard let ports = parse(text) else { throw .startFailed("\(addedPath) is not a list of ports") }
        return ports
    }

    /// The ports jaild has added to the sysctl, in `addedPath` (none: no file).
    static func record(_ added: Set<UInt16>) throws(JailError) {
        do throws(SystemError) {
            if added.isEmpty {
                try removeFile(addedPath)
            } else {
                try writeFileAtomically(addedPath, Array(format(added).utf8), mode: 0o600)
            }
        } catch {
            throw .failed("cannot record the ports jaild reserves in \(addedPath)", error)
        }
    }

    /// Reserved ports are gone from every process's outgoing connections: say so when the
    /// jails own more than half of the ephemeral range.
    static func warnIfCrowded(_ owned: Set<UInt16>) {
        let bounds = ((try? readText("/proc/sys/net/ipv4/ip_local_port_range")) ?? "").split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard bounds.count == 2, let low = UInt16(bounds[0]), let high = UInt16(bounds[1]), low <= high else { return }
        let taken = owned.filter { (low...high).contains($0) }.count
        if taken * 2 > Int(high - low) + 1 {
            log.warning("the jails own \(taken) of the \(Int(high - low) + 1) ephemeral ports (\(low)-\(high)), reserved from every process's outgoing connections")
        }
    }
}
