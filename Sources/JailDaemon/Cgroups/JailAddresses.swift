import CJail
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// A jail's own addresses (`--address`, `--loopback`): checked against the host and the other
/// running jails before the start, the loopback address chosen and kept, and the plan the BPF
/// programs of address.c are emitted from. docs/security.md "A jail's own addresses".
public enum JailAddresses {
    /// The addresses of the host's interfaces now (getifaddrs), in jaild's network namespace.
    static func configured() -> Set<HostAddress> {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var found: Set<HostAddress> = []
        var entry = list
        while let current = entry {
            if let address = current.pointee.ifa_addr {
                switch Int32(address.pointee.sa_family) {
                case AF_INET:
                    address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        var bytes = $0.pointee.sin_addr
                        found.insert(HostAddress(bytes: withUnsafeBytes(of: &bytes) { Array($0) }))
                    }
                case AF_INET6:
                    address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        var bytes = $0.pointee.sin6_addr
                        found.insert(HostAddress(bytes: withUnsafeBytes(of: &bytes) { Array($0) }))
                    }
                default: break
                }
            }
            entry = current.pointee.ifa_next
        }
        return found
    }

    /// Before the start: every `--address` is the host's; no running jail has one of them
    /// (unless both say `--address-shared`) nor the jail's `--loopback`.
    static func check(_ configuration: JailConfiguration, ownSocket: String) throws(JailError) {
        if !configuration.addresses.isEmpty {
            let host = configured()
            for address in configuration.addresses where !host.contains(address) {
                throw .startFailed("--address \(address) is not an address of this host (add it first: "
                                   + "ip address add \(address)/\(address.isIPv4 ? 32 : 128) dev IFACE)")
            }
        }
        let mine = Set(configuration.addresses.map(\.description))
        // Nothing to compare (no address, no fixed loopback): no jail's state is read.
        if case .fixed = configuration.loopbackChoice {} else if mine.isEmpty { return }
        for (state, alive) in JailState.all() where alive && state.socket != ownSocket {
            let shared = mine.intersection(state.addresses)
            if let address = shared.sorted().first, !(configuration.addressShared && state.addressShared) {
                throw .startFailed("address \(address) is the jail on \(state.socket)'s (both jails need --address-shared to share it)")
            }
            if case .fixed(let loopback) = configuration.loopbackChoice, state.loopback == loopback.description {
                throw .startFailed("loopback address \(loopback) is the jail on \(state.socket)'s")
            }
        }
    }

    /// The jail's loopback address: the one it had (a record in /var/lib/jail/loopback names
    /// it), else the first free one of the pool, recorded with O_EXCL so two starts never take
    /// the same. A fixed `--loopback` is used as given (checked against running jails).
    static func loopback(for configuration: JailConfiguration, name: String, socket: String) throws(JailError) -> HostAddress? {
        guard let choice = configuration.loopbackChoice else { return nil }
        if case .fixed(let address) = choice { return address }
        return try LoopbackStore().address(for: name, socket: socket, pool: configuration.loopbackPool,
                                           inUse: Set(JailState.all().filter(\.alive).compactMap { HostAddress.parse($0.state.loopback) }))
    }

    /// The loopback address `loopback(for:)` gave the jail at its start (its record names it
    /// by then): for the state file, with no new choice.
    static func chosenLoopback(_ configuration: JailConfiguration, name: String) -> HostAddress? {
        switch configuration.loopbackChoice {
        case nil: nil
        case .fixed(let address): address
        case .auto: LoopbackStore().records().first { $0.name == name }?.address
        }
    }

    /// What address.c emits the programs from.
    static func plan(_ configuration: JailConfiguration, loopback: HostAddress?) -> cj_address_plan {
        var plan = cj_address_plan()
        let ipv4 = configuration.addresses.filter(\.isIPv4)
        let ipv6 = configuration.addresses.filter { !$0.isIPv4 }
        plan.ipv4_count = Int32(ipv4.count)
        plan.ipv6_count = Int32(ipv6.count)
        withUnsafeMutableBytes(of: &plan.ipv4) { words in
            for (i, address) in ipv4.enumerated() { words.storeBytes(of: address.memoryWord, toByteOffset: 4 * i, as: UInt32.self) }
        }
        withUnsafeMutableBytes(of: &plan.ipv6) { bytes in
            for (i, address) in ipv6.enumerated() { bytes.baseAddress!.advanced(by: 16 * i).copyMemory(from: address.bytes, byteCount: 16) }
        }
        plan.loopback = loopback?.memoryWord ?? 0
        plan.allow_host_loopback = configuration.allowHostLoopback ? 1 : 0
        return plan
    }
}

extension JailConfiguration {
    /// Why these address options cannot work together, or nil.
    public var addressProblem: String? {
        let ipv4 = addresses.filter(\.isIPv4).count
        if ipv4 > Int(CJ_ADDRESSES_MAX) || addresses.count - ipv4 > Int(CJ_ADDRESSES_MAX) {
            return "--address: at most \(CJ_ADDRESSES_MAX) IPv4 and \(CJ_ADDRESSES_MAX) IPv6 addresses"
        }
        if Set(addresses).count != addresses.count { return "--address: an address is given twice" }
        if let loopback = addresses.first(where: \.isLoopbackNetwork) {
            return "--address \(loopback): a 127/8 address is a jail's --loopback, not its --address"
        }
        if addressShared && addresses.isEmpty { return "--address-shared needs --address" }
        if allowHostLoopback && loopbackChoice == nil { return "--allow-host-loopback needs --loopback or --address" }
        if rootless && loopbackChoice != nil { return "--address and --loopback need a root jaild (cgroup-BPF on the host's network)" }
        return nil
    }
}

/// Chosen loopback addresses, one file each in /var/lib/jail/loopback named by the address and
/// holding the jail's name and socket; kept when the jail stops, so it gets the same address
/// again, and removed by `jaild destroy`.
public struct LoopbackStore {
    static let directory = "/var/lib/jail/loopback"
    let directory: String

    init(directory: String = LoopbackStore.directory) { self.directory = directory }

    func records() -> [(address: HostAddress, name: String, socket: String)] {
        listDirectory(directory).compactMap { file in
            guard let address = HostAddress.parse(file), let text = try? readText("\(directory)/\(file)") else { return nil }
            let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            guard words.count >= 2 else { return nil }
            return (address, String(words[0]), String(words[1]))
        }
    }

    func address(for name: String, socket: String, pool: LoopbackPool, inUse: Set<HostAddress>) throws(JailError) -> HostAddress {
        try JailError.wrap { () throws(SystemError) in
            for directory in ["/var/lib/jail", directory] { try ensureDirectory(directory, mode: 0o755) }
        }
        let records = records()
        if let mine = records.first(where: { $0.name == name }) { return mine.address }
        let taken = Set(records.map(\.address)).union(inUse)
        for candidate in pool.addresses where !taken.contains(candidate) {
            let path = "\(directory)/\(candidate)"
            let created = try JailError.wrap { () throws(SystemError) in try createExclusively(path, "\(name) \(socket)\n") }
            if created { return candidate }  // else another jaild was faster
        }
        throw .startFailed("--loopback auto: every address of the pool \(pool) is taken (--loopback-pool)")
    }

    /// `jaild destroy`: the jail's address goes back to the pool.
    func release(socket: String) throws(JailError) {
        for record in records() where record.socket == socket {
            let path = "\(directory)/\(record.address)"
            try JailError.wrap { () throws(SystemError) in try removeFile(path) }
        }
    }
}
