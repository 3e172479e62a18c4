import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Puts port ownership into force (ports.c): every jail's cgroup gets the post-bind check
/// against the owned-ports map shared by all jails, so no jail — with or without `--ports` —
/// ends up bound to a port another jail owns, whatever route it took (bind(0),
/// IP_LOCAL_PORT_RANGE, retries); a `--ports` jail also gets the bind filter. The map holds what
/// the records say, one per `--ports`, `--address` or `--loopback` jail, /run/jail/ports/CGROUP-ID
/// (its ports on its addresses, see Ownership), changed under a lock.
/// A start touches only its own entries: it finds the map by the id in /run/jail/ports/map-id
/// and adds its ports where free, so a start costs the same with 10 jails or 10,000. The whole
/// map is rebuilt from every record only when that cannot decide: a new map, a port another
/// jail holds (shared, or the entry of a jail that died without stopping, which goes then),
/// and the stop of a `--ports` jail (a shared port passes to the next jail that lists it).
/// Without cgroup v2 or cgroup-BPF a `--ports` jail does not start: a jail that silently
/// allows every port would be worse than none.
public enum PortFilter {
    static let recordDirectory = "/run/jail/ports"
    static let lockPath = "/run/jail/ports.lock"

    static func attach(_ configuration: JailConfiguration, jail name: String, socket: String,
                       to cgroups: JailCgroups?) throws(JailError) {
        let ports = configuration.ports
        let loopback = try JailAddresses.loopback(for: configuration, name: name, socket: socket)
        let ownership = Ownership(ports: ports, addresses: configuration.addresses, loopback: loopback)
        guard let directory = cgroups?.unifiedDirectory else {
            guard ports == nil && !ownership.hasAddresses else {
                throw .startFailed("--ports, --address and --loopback need cgroup v2, which is not mounted on this host (mount -t cgroup2 none /sys/fs/cgroup)")
            }
            return  // no cgroup v2: no jail here can own a port either
        }
        do throws(JailError) {
            try attachLocked(ownership, plan: JailAddresses.plan(configuration, loopback: loopback), directory: directory)
        } catch {
            guard ports == nil && !ownership.hasAddresses else { throw error }
            // No --ports jail can start where the kernel refuses these programs: nothing to guard.
            log.warning("cannot guard other jails' ports: \(error)")
        }
    }

    private static func attachLocked(_ ownership: Ownership, plan: cj_address_plan, directory: String) throws(JailError) {
        let lock = try Lock.acquire()
        defer { lock.release() }
        // The jail's own cgroup, made by this start: one it cannot read fails with the reason.
        let owner: UInt64
        do throws(SystemError) {
            guard let info = try fileStatus(directory) else { throw SystemError("lstat", path: directory, errno: .noSuchFileOrDirectory) }
            guard isDirectory(info) else { throw SystemError("lstat", path: directory, errno: .notDirectory) }
            owner = UInt64(info.st_ino)
        } catch { throw .failed("--ports: cannot open cgroup \(directory)", error) }
        let ports = ownership.ports
        let owns = ports != nil || ownership.hasAddresses
        if owns { try writeRecord(ownership, owner: owner) }
        guard let (map, isNew) = try openMap(create: true) else { return }  // not reached: create makes one
        defer { closeDescriptor(map) }
        if isNew {
            try sync(map: map, jailRoot: parent(of: directory))
        } else if owns {
            try claim(ownership, owner: owner, map: map, jailRoot: parent(of: directory))
        }
        let ranges = (ports?.ranges ?? []).map { (protocol: $0.protocolNumber, low: $0.low, high: $0.high) }
        do { try attachPortPrograms(to: directory, map: map, ranges: ranges, bindFilter: ports != nil, plan: plan) } catch {
            switch error {
            case .cgroup(let failure): throw .failed("--ports: cannot open cgroup \(directory)", failure)
            case .load(let failure), .map(let failure): throw .failed("--ports: this kernel refused the port filter (cgroup-BPF)", failure)
            case .attach(let failure): throw .failed("--ports: cannot attach the port filter to \(directory)", failure)
            }
        }
    }

    /// Detaches the programs and gives the jail's ports back (at stop, or a failed start).
    /// False (and one line logged) when the owned ports could not be brought up to date.
    @discardableResult
    static func detach(from cgroups: JailCgroups?) -> Bool {
        guard let unified = cgroups?.unifiedDirectory else { return true }
        NetworkCounters.detach(from: cgroups)
        do { try detachPortPrograms(from: unified) } catch {
            log.warning("cannot detach the port filter from \(unified): \(error.errno)")
        }
        let lock: Lock
        do throws(JailError) { lock = try Lock.acquire() } catch {
            log.error("cannot give back the jail's ports: \(error)")
            return false
        }
        defer { lock.release() }
        // A jail without a record (no --ports, --address, --loopback) has nothing in the map or
        // the reserved list.
        guard let owner = cgroupID(unified) else { return true }
        do throws(JailError) {
            let hadRecord = try JailError.wrap { () throws(SystemError) in try removeFile("\(recordDirectory)/\(owner)") }
            guard hadRecord else { return true }
            // The map lives as long as some jail's program uses it: none left, no map to clean.
            let map = try openMap(create: false)?.fd
            defer { if let map { closeDescriptor(map) } }
            try sync(map: map ?? -1, jailRoot: parent(of: unified), excluding: unified)
        } catch {
            log.error("cannot give back the jail's ports: \(error)")
            return false
        }
        return true
    }

    static let mapIDPath = "/run/jail/ports/map-id"

    /// The owned-ports map: by the id jaild recorded (no walk over the host's BPF maps, which
    /// every jail's network counters add to), else found by name (a map made before the id
    /// file) or, with `create`, made; `isNew` when it was made here; nil when there is none and
    /// `create` is false. The id is recorded again whenever it changed. Called under the lock.
    private static func openMap(create: Bool) throws(JailError) -> (fd: Int32, isNew: Bool)? {
        // No file: no id recorded yet (the map is found by name). A file that cannot be read is an
        // error: taken for absent, a second map could be made beside the one the jails use.
        let recordedText: String
        do { recordedText = try readText(mapIDPath) } catch {
            guard error.errno == .noSuchFileOrDirectory else {
                throw .failed("--ports: cannot read the owned-ports map's id, \(mapIDPath)", error)
            }
            recordedText = ""
        }
        let recorded = UInt32(recordedText.split(separator: "\n").first ?? "") ?? 0
        if let byID = ownedPortsMap(id: recorded) { return (byID, false) }
        let opened: (fd: Int32, isNew: Bool)?
        do { opened = try openOwnedPortsMap(create: create) } catch {
            throw .failed("--ports: this kernel refused the owned-ports map (BPF)", error)
        }
        guard let (fd, isNew) = opened else { return nil }
        let id = ownedPortsMapID(fd)
        if id != recorded && id != 0 {
            do throws(JailError) { try writeMapID(id) } catch {
                closeDescriptor(fd)
                throw error
            }
        }
        return (fd, isNew)
    }

    /// /run/jail/ports/map-id, replaced by rename (a reader sees the old id or the new).
    private static func writeMapID(_ id: UInt32) throws(JailError) {
        try makeRecordDirectory()
        try JailError.wrap { () throws(SystemError) in try writeFile(mapIDPath, text: "\(id)\n", mode: 0o600, .atomic) }
    }

    /// A start's own keys into the map where nobody holds them, and its ports into the reserved
    /// list. A key that another jail holds (a shared port or address, or the entry of a jail
    /// that died without stopping) is left to the full rebuild, which decides from every record.
    private static func claim(_ ownership: Ownership, owner: UInt64, map: Int32, jailRoot: String) throws(JailError) {
        let (keys, _) = OwnedPorts.entries([(owner, ownership)])
        let holders: [UInt64]
        do { holders = try addOwnedPorts(keys.map(\.entry), owner: owner, map: map) } catch {
            throw .failed("--ports: cannot update the owned-ports map", error)
        }
        if holders.contains(where: { $0 != owner }) { return try sync(map: map, jailRoot: jailRoot) }
        try ReservedPorts.include(OwnedPorts.ports(of: keys))
    }

    /// The map (if there is one) gets exactly the ports of the records whose jail's cgroup still
    /// exists, and those ports are reserved from the kernel's automatic choice; the records of
    /// dead jails are removed. The first record of a shared port names its owner.
    private static func sync(map: Int32, jailRoot: String, excluding: String? = nil) throws(JailError) {
        var live: Set<UInt64> = []
        for name in listDirectory(jailRoot) where "\(jailRoot)/\(name)" != excluding {
            if let id = cgroupID("\(jailRoot)/\(name)") { live.insert(id) }
        }
        var records: [(owner: UInt64, ownership: Ownership)] = []
        for name in listDirectory(recordDirectory) {
            guard let owner = UInt64(name) else { continue }
            let path = "\(recordDirectory)/\(name)"
            // A live jail's record that cannot be read stops the sync: dropped, its ports would be
            // no one's while its jail runs. One that does not parse is dropped as a dead jail's.
            var text: [UInt8]?
            if live.contains(owner) {
                do { text = try readFile(path) } catch {
                    if error.errno == .noSuchFileOrDirectory { continue }  // removed by its own stop meanwhile
                    throw .failed("--ports: cannot read the port record \(path)", error)
                }
            }
            guard let text, let ownership = Ownership.parse(String(decoding: text, as: UTF8.self)) else {
                do { try removeFile(path) } catch { log.warning("cannot remove the port record of a jail that is gone: \(error)") }
                continue
            }
            records.append((owner, ownership))
        }
        let (keys, owners) = OwnedPorts.entries(records.sorted { $0.owner < $1.owner })
        try ReservedPorts.update(owned: OwnedPorts.ports(of: keys))
        guard map >= 0 else { return }
        do { try syncOwnedPorts(keys.map(\.entry), owners: owners, map: map) } catch {
            throw .failed("--ports: cannot update the owned-ports map", error)
        }
    }

    private static func makeRecordDirectory() throws(JailError) {
        try JailError.wrap { () throws(SystemError) in
            try ensureDirectory("/run/jail", mode: 0o755)
            try ensureDirectory(recordDirectory, mode: 0o700)
        }
    }

    private static func writeRecord(_ ownership: Ownership, owner: UInt64) throws(JailError) {
        try makeRecordDirectory()
        let path = "\(recordDirectory)/\(owner)"
        try JailError.wrap { () throws(SystemError) in try writeFile(path, text: ownership.description, mode: 0o600) }
    }

    /// A cgroup's id is its directory's inode number (what bpf_get_current_cgroup_id returns).
    private static func cgroupID(_ directory: String) -> UInt64? {
        guard let info = try? fileStatus(directory), info.st_mode & S_IFMT == S_IFDIR else { return nil }
        return UInt64(info.st_ino)
    }

    private static func parent(of path: String) -> String {
        String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
    }

    /// One jaild at a time changes the map, so a start never loses another's entries.
    private struct Lock {
        let fd: FileDescriptor

        static func acquire() throws(JailError) -> Lock {
            try JailError.wrap { () throws(SystemError) in
                try ensureDirectory("/run/jail", mode: 0o755)
                let fd = try openFile(lockPath, O_RDWR | O_CREAT | O_NOFOLLOW, mode: 0o600)
                do throws(SystemError) { try fd.lock(exclusive: true) } catch {
                    fd.closeQuietly()
                    throw SystemError("flock", path: lockPath, errno: error.errno)
                }
                return Lock(fd: fd)
            }
        }

        func release() { fd.closeQuietly() }
    }

    /// Other running jails whose ports overlap: a warning each, or an error when exclusive.
    /// Two jails' ports overlap only where their addresses can meet: both with `--address`
    /// and no address in common, they do not; a jail without one owns its ports everywhere.
    /// The addresses themselves are checked first (JailAddresses.check).
    ///
    /// Every running jail that owns a port has a record in /run/jail/ports (written at its
    /// start, removed at its stop), so the records are read first: when none has one of these
    /// ports, no running jail has, and no jail's state is read. Only a record that does (or
    /// that cannot be read or parsed) leads to the walk of every jail's state, which names the
    /// jail and knows whether it still runs. The walk read and decoded every state file at every
    /// `--ports` start: 65 % of such a start with 2,300 jails running (50–80 ms).
    public static func checkOverlap(_ configuration: JailConfiguration, ownSocket: String) throws(JailError) {
        try JailAddresses.check(configuration, ownSocket: ownSocket)
        guard let ports = configuration.ports else { return }
        guard recordsMayOverlap(ports) else { return }
        let mine = Set(configuration.addresses.map(\.description))
        for (state, alive) in JailState.all() where alive && state.socket != ownSocket && !state.ports.isEmpty {
            guard let theirs = try? PortSet.parse(state.ports) else { continue }
            if !mine.isEmpty && !state.addresses.isEmpty && mine.isDisjoint(with: state.addresses) { continue }
            let shared = ports.overlap(with: theirs)
            guard !shared.isEmpty else { continue }
            let text = PortSet(ranges: shared).description
            // Said when only one of the two has an address: why they meet at all.
            let everywhere = mine.isEmpty != state.addresses.isEmpty ? " (a jail without --address owns its ports on every address)" : ""
            if configuration.portsExclusive {
                throw .startFailed("ports \(text) belong to the jail on \(state.socket) (--ports-exclusive)\(everywhere)")
            }
            JailLogHandler.emitToTerminal("warning: ports \(text) are also the ports of the jail on \(state.socket)\(everywhere)")
        }
    }
}

extension PortFilter {
    /// Whether some record in /run/jail/ports may name one of `ports`: one that does, or that
    /// cannot be read or parsed (a record is rewritten in place under the lock, which this
    /// does not take, so a read may see it half-written). No directory: no jail owns a port.
    static func recordsMayOverlap(_ ports: PortSet) -> Bool {
        let entries: [DirectoryEntry]
        do throws(SystemError) {
            guard let directory = try openFileIfPresent(recordDirectory, O_RDONLY | O_DIRECTORY) else { return false }
            defer { closeDescriptor(directory.rawValue) }
            entries = try directoryEntries(of: directory, path: recordDirectory)
        } catch {
            log.debug("\(error): every jail's ports are compared")
            return true
        }
        for entry in entries where UInt64(entry.name) != nil {
            let text: [UInt8]
            do throws(SystemError) {
                guard let bytes = try readFileIfPresent("\(recordDirectory)/\(entry.name)", limit: 1 << 20) else { continue }
                text = bytes
            } catch { return true }  // gone (its stop) is nil above; any other failure is doubt
            guard let ownership = Ownership.parse(String(decoding: text, as: UTF8.self)) else { return true }
            if let theirs = ownership.ports, !ports.overlap(with: theirs).isEmpty { return true }
        }
        return false
    }
}

/// What one jail owns (its record, /run/jail/ports/CGROUP-ID): its `--ports` on its
/// addresses (none: every address) and its loopback address whole. The record's first line is
/// the ports as before addresses, then `address A` and `loopback L` lines.
public struct Ownership: Equatable, Sendable, CustomStringConvertible {
    public var ports: PortSet?
    public var addresses: [HostAddress] = []
    public var loopback: HostAddress?

    public init(ports: PortSet?, addresses: [HostAddress] = [], loopback: HostAddress? = nil) {
        self.ports = ports
        self.addresses = addresses
        self.loopback = loopback
    }

    var hasAddresses: Bool { !addresses.isEmpty || loopback != nil }

    public var description: String {
        ([ports?.description ?? ""] + addresses.map { "address \($0)" } + (loopback.map { ["loopback \($0)"] } ?? []))
            .joined(separator: "\n") + "\n"
    }

    public static func parse(_ text: String) -> Ownership? {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let first = lines.isEmpty ? "" : lines.removeFirst()
        var ownership = Ownership(ports: nil)
        if !first.isEmpty {
            guard let ports = try? PortSet.parse(first) else { return nil }
            ownership.ports = ports
        }
        for line in lines where !line.isEmpty {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let address = HostAddress.parse(String(parts[1])) else { return nil }
            switch parts[0] {
            case "address": ownership.addresses.append(address)
            case "loopback": ownership.loopback = address
            default: return nil
            }
        }
        return ownership
    }
}

/// The owned-ports map's content: keys (protocol << 16 | port, address), value the owner's
/// cgroup id. A port owned on every address has the all-zeros address; one owned on an
/// address has that address (IPv4 as ::ffff:a.b.c.d) and also the all-ones key, which a
/// wildcard bind looks up ("some jail owns it somewhere"); a loopback address is owned whole,
/// port 0.
public enum OwnedPorts {
    public struct Key: Hashable, Sendable {
        public let port: UInt32
        public let address: [UInt8]

        static let everywhere: [UInt8] = Array(repeating: 0, count: 16)
        static let somewhere: [UInt8] = Array(repeating: 0xff, count: 16)

        var entry: cj_owned_key {
            var key = cj_owned_key()
            key.prefixlen = UInt32(CJ_OWNED_KEY_BITS)
            key.port = port
            withUnsafeMutableBytes(of: &key.address) { $0.copyBytes(from: address) }
            return key
        }
    }

    public static func key(protocol number: Int32, port: UInt16) -> UInt32 { UInt32(number) << 16 | UInt32(port) }

    /// The port numbers of these keys, for ip_local_reserved_ports (a loopback's key has none).
    static func ports(of keys: [Key]) -> Set<UInt16> {
        Set(keys.filter { $0.port & 0xffff != 0 }.map { UInt16(truncatingIfNeeded: $0.port) })
    }

    /// Every key of every record once; a key that several records have belongs to the first.
    public static func entries(_ records: [(owner: UInt64, ownership: Ownership)]) -> (keys: [Key], owners: [UInt64]) {
        var seen: Set<Key> = []
        var keys: [Key] = []
        var owners: [UInt64] = []
        func add(_ key: Key, _ owner: UInt64) {
            if seen.insert(key).inserted {
                keys.append(key)
                owners.append(owner)
            }
        }
        for (owner, ownership) in records {
            let addresses = ownership.addresses.isEmpty ? [Key.everywhere] : ownership.addresses.map(\.mapped)
            for range in ownership.ports?.ranges ?? [] {
                for port in range.low...range.high {
                    let number = key(protocol: range.protocolNumber, port: port)
                    for address in addresses { add(Key(port: number, address: address), owner) }
                    if !ownership.addresses.isEmpty { add(Key(port: number, address: Key.somewhere), owner) }
                }
            }
            if let loopback = ownership.loopback { add(Key(port: 0, address: loopback.mapped), owner) }
        }
        return (keys, owners)
    }
}
