import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What `jaild list`, `stop` and `status` know of a running jail: one small key=value file per
/// jail in /run/jail/state, written by its supervisor once the jail is ready and removed at
/// stop. Liveness is never taken from it alone: the pid file's lock decides.
///
/// It is also how a new supervisor finds a jail whose supervisor died (adoption): `version`
/// is the format, `identity` pins init (start time and namespaces, so a recycled pid is never
/// taken for it), `control` is init's adoption socket and `cgroups` every directory to remove.
public struct JailState: Equatable, Sendable {
    public var socket: String
    public var pidFile: String
    public var uid: UInt32
    public var gid: UInt32
    public var root: String
    public var supervisor: Int32
    public var initPid: Int32
    public var started: Int64
    public var cgroup: String
    public var ports: String = ""
    /// How `--rc` ended (its exit status); nil when the jail has no rc.
    public var rcStatus: Int32? = nil
    /// The first host id of the jail's user-namespace range (root inside); nil without one.
    public var userRange: UInt32? = nil
    /// The jail's name (`JailConfiguration.name(account:)`), for `jaild sessions NAME`.
    public var name: String = ""
    public var version: Int = JailState.formatVersion
    /// `--service`s as `JPATH=HOSTPATH` (neither holds a comma, JPATH no '='). A key older
    /// jailds ignore and a jail they started lacks: no new format version.
    public var services: [String] = []
    public var identity: ProcessIdentity?
    public var control: String = ""
    public var cgroups: [String] = []
    /// Whether sessions get ssh agent and X11 forwarding (`--no-forward-agent`, `--forward-x11`),
    /// for the key options of `jaild authorized-keys`.
    public var forwardAgent = true
    public var forwardX11 = false
    /// The id of the jail's network counter map (NetworkCounters); nil without counters. A key
    /// older jailds ignore: no new format version.
    public var traffic: UInt32? = nil
    /// `--address`es, `--address-shared` and the loopback address (`--loopback`, or chosen):
    /// keys older jailds ignore, no new format version.
    public var addresses: [String] = []
    public var addressShared = false
    public var loopback: String = ""
    /// How many `--boot` commands the jail runs; nil in a state written before the field.
    /// 0 tells `jaild metrics` that init has no boot record to look for among its descriptors.
    public var bootCommands: Int? = nil

    public static let directory = "/run/jail/state"
    /// 1: before adoption (no identity, no control socket). 2: adoptable.
    public static let formatVersion = 2

    /// `key=value` lines, appended to one String: built as arrays of (key, value) tuples mapped
    /// and joined, the first use of those generic types cost the supervisor a tenth of a
    /// millisecond between init's readiness and the start's return (Swift runtime lookups).
    public func encoded() -> String {
        var text = ""
        func line(_ key: String, _ value: String) {
            text += key
            text += "="
            text += value
            text += "\n"
        }
        line("socket", socket)
        line("pidfile", pidFile)
        line("uid", String(uid))
        line("gid", String(gid))
        line("root", root)
        line("supervisor", String(supervisor))
        line("init", String(initPid))
        line("started", String(started))
        line("cgroup", cgroup)
        line("ports", ports)
        line("rc", rcStatus.map { String($0) } ?? "")
        line("userns", userRange.map { String($0) } ?? "")
        line("name", name)
        line("version", String(version))
        line("initstart", identity.map { String($0.startTime) } ?? "")
        line("pidns", identity?.pidNamespace ?? "")
        line("mntns", identity?.mountNamespace ?? "")
        line("control", control)
        line("cgroups", cgroups.joined(separator: ":"))
        line("services", services.joined(separator: ","))
        line("forward", forwardAgent && forwardX11 ? "agent,x11" : forwardAgent ? "agent" : forwardX11 ? "x11" : "")
        line("boot", bootCommands.map { String($0) } ?? "")
        if let traffic { line("traffic", String(traffic)) }
        if !(addresses.isEmpty && loopback.isEmpty) {
            line("addresses", addresses.joined(separator: ","))
            line("addressshared", addressShared ? "1" : "")
            line("loopback", loopback)
        }
        return text
    }

    public static func decode(_ text: String) -> JailState? {
        var text = text
        return text.withUTF8 { decode(bytes: $0) }
    }

    public static func decode(_ bytes: [UInt8]) -> JailState? {
        bytes.withUnsafeBufferPointer { decode(bytes: $0) }
    }

    /// The keys of a state file, in the order `encoded` writes them (a file is matched in
    /// that order first: one comparison per line).
    private static let keys: [[UInt8]] = [
        "socket", "pidfile", "uid", "gid", "root", "supervisor", "init", "started", "cgroup", "ports", "rc", "userns",
        "name", "version", "initstart", "pidns", "mntns", "control", "cgroups", "services", "forward", "boot",
        "traffic", "addresses", "addressshared", "loopback",
    ].map { Array($0.utf8) }

    /// On bytes, without a dictionary of Strings: `jaild list` decodes every jail's state, and
    /// building one String per key and value was a seventh of its time at 2,000 jails. Each
    /// line is `key=value`; the last line of a key wins, lines without '=' and unknown keys
    /// are skipped, as the format has always been read.
    static func decode(bytes: UnsafeBufferPointer<UInt8>) -> JailState? {
        // Where each key's value is in `bytes` (nil: absent), indexed as `keys`.
        var values = [Range<Int>?](repeating: nil, count: keys.count)
        var next = 0  // the key expected on the next line
        var lineStart = 0
        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            var equals = lineStart
            while equals < lineEnd && bytes[equals] != UInt8(ascii: "=") { equals += 1 }
            if equals < lineEnd {
                let key = UnsafeBufferPointer(rebasing: bytes[lineStart..<equals])
                for offset in 0..<keys.count {
                    let index = (next + offset) % keys.count
                    if keys[index].elementsEqual(key) {
                        values[index] = (equals + 1)..<lineEnd
                        next = index + 1
                        break
                    }
                }
            }
            lineStart = lineEnd + 1
        }
        func text(_ index: Int) -> String? {
            values[index].map { String(decoding: UnsafeBufferPointer(rebasing: bytes[$0]), as: UTF8.self) }
        }
        func number<T: FixedWidthInteger>(_ index: Int, as: T.Type = T.self) -> T? {
            values[index].flatMap { parseInteger(UnsafeBufferPointer(rebasing: bytes[$0])) }
        }
        func list(_ index: Int, separator: UInt8) -> [String] {
            guard let range = values[index] else { return [] }
            return UnsafeBufferPointer(rebasing: bytes[range]).split(separator: separator).map {
                String(decoding: $0, as: UTF8.self)
            }
        }
        guard let socket = text(0), let pidFile = text(1), let uid = number(2, as: UInt32.self),
              let gid = number(3, as: UInt32.self), let supervisor = number(5, as: Int32.self),
              let initPid = number(6, as: Int32.self), let started = number(7, as: Int64.self)
        else { return nil }
        var state = JailState(socket: socket, pidFile: pidFile, uid: uid, gid: gid, root: text(4) ?? "/",
                              supervisor: supervisor, initPid: initPid, started: started, cgroup: text(8) ?? "",
                              ports: text(9) ?? "", rcStatus: number(10), userRange: number(11),
                              name: text(12) ?? "\(uid)-\(gid)")
        state.version = number(13, as: Int.self) ?? 1
        if let start = number(14, as: UInt64.self), let pidns = text(15), let mntns = text(16), !pidns.isEmpty, !mntns.isEmpty {
            state.identity = ProcessIdentity(startTime: start, pidNamespace: pidns, mountNamespace: mntns)
        }
        state.control = text(17) ?? ""
        state.cgroups = list(18, separator: UInt8(ascii: ":"))
        state.services = list(19, separator: UInt8(ascii: ","))
        // A state written before the field: the defaults, agent forwarding on, X11 off.
        if values[20] != nil {
            let kinds = list(20, separator: UInt8(ascii: ","))
            state.forwardAgent = kinds.contains("agent")
            state.forwardX11 = kinds.contains("x11")
        }
        state.bootCommands = number(21)
        state.traffic = number(22)
        state.addresses = list(23, separator: UInt8(ascii: ","))
        state.addressShared = values[24].map { bytes[$0].elementsEqual([UInt8(ascii: "1")]) } ?? false
        state.loopback = text(25) ?? ""
        return state
    }

    /// The state file `name`; nil when there is none (a jail that stopped meanwhile). One that
    /// cannot be read or decoded is said in a warning, never taken for an absent jail in
    /// silence: `jaild list`, a start's check for another jail on its root and the choice of a
    /// free loopback address read the running jails from these files.
    static func load(name: String) -> JailState? {
        switch read(name: name) {
        case .absent: return nil
        case .state(let state): return state
        case .unusable(let warning):
            log.warning("\(warning)")
            return nil
        }
    }

    /// What reading a state file found: none, a state, or the warning `load` gives for it.
    enum Reading: Sendable {
        case absent
        case state(JailState)
        case unusable(String)
    }

    /// `load` without its warning, which is returned instead: `jaild list` reads the state
    /// files on several threads and says the warnings afterwards, in the directory's order.
    /// `stateDirectory`: the state directory opened by the caller, the files opened in it (a
    /// shorter path walk for each of thousands); the messages name the full path either way.
    static func read(name: String, in stateDirectory: FileDescriptor? = nil) -> Reading {
        let path = "\(directory)/\(name).state"
        var bytes: [UInt8]
        do throws(SystemError) {
            let opened: FileDescriptor?
            do { opened = try openFileIfPresent(stateDirectory == nil ? path : "\(name).state", O_RDONLY, in: stateDirectory) } catch {
                throw SystemError("open", path: path, errno: error.errno)
            }
            guard let fd = opened else { return .absent }
            defer { closeDescriptor(fd.rawValue) }
            // Written whole and renamed into place (save), never changed after: a read that
            // returns less than it asked for has the whole file, and the read of its end is
            // spared (`jaild list` reads every jail's). A page holds a state (~500 bytes).
            let limit = 1 << 20
            let first = 4096
            do throws(SystemError) {
                if let chunk = try fd.readChunk(max: first) {
                    bytes = chunk
                    if chunk.count == first { bytes += try readAll(fd, limit: limit - first) }
                } else {
                    bytes = try readAll(fd, limit: limit)
                }
            } catch {
                throw SystemError("read", path: path, errno: error.errno)
            }
        } catch {
            return .unusable("cannot read the state file of jail \(name): \(error)")
        }
        guard let state = decode(bytes) else {
            return .unusable("\(path) is not a jail state file (a field is missing or malformed)")
        }
        return .state(state)
    }

    /// Written whole or not at all (a temporary file renamed over the old one), every failure
    /// thrown: `jaild list`, `stop NAME`, `sessions`, `enter` and adoption depend on it.
    func save(as name: String) throws(SystemError) {
        try ensureDirectory("/run/jail", mode: 0o755)
        try ensureDirectory(Self.directory, mode: 0o755)
        try writeFileAtomically("\(Self.directory)/\(name).state", Array(encoded().utf8), mode: 0o644)
        Self.index(byName: self.name, to: name)
        Self.index(byRoot: root, to: name)
    }

    static func remove(name: String) {
        let state = load(name: name)
        // One left behind is a stopped jail's (list shows only live ones), and said.
        do { try removeFile("\(directory)/\(name).state") } catch { log.warning("cannot remove \(error)") }
        // The index entries go only when they are still this state file's.
        if let state {
            for entry in [nameEntry(state.name), rootEntry(state.root)] where ProcessIdentity.link(entry) == "\(directory)/\(name).state" {
                do { try removeFile(entry) } catch { log.warning("cannot remove \(error)") }
            }
        }
    }

    // The indexes: /run/jail/index/name/JAILNAME and …/root/HASH (of the root directory) are
    // symlinks to the state file (beside the state directory, whose listing holds state files
    // only), so `jaild stop NAME` and a start's check for another jail on its layers read one
    // state file, not all of them. The state file stays the truth: an entry is used only
    // when the file it names holds that name or root (a stale entry is ignored and replaced).
    static let indexDirectory = "/run/jail/index"
    static var nameIndex: String { indexDirectory + "/name" }
    static var rootIndex: String { indexDirectory + "/root" }

    static func nameEntry(_ jailName: String) -> String { "\(nameIndex)/\(jailName)" }

    static func rootEntry(_ root: String) -> String {
        var hash: UInt64 = 14_695_981_039_346_656_037  // FNV-1a: a file name for any path
        for byte in BindMount.normalize(root).utf8 { hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211 }
        return "\(rootIndex)/" + String(hash, radix: 16)
    }

    private static func index(byName jailName: String, to stateName: String) {
        guard !jailName.isEmpty, !jailName.contains("/"), !jailName.hasPrefix(".") else { return }
        pointEntry(nameEntry(jailName), in: nameIndex, to: stateName)
    }

    private static func index(byRoot root: String, to stateName: String) {
        pointEntry(rootEntry(root), in: rootIndex, to: stateName)
    }

    /// A new symlink renamed over the entry. A failure costs only speed (the lookups fall
    /// back to reading every state file), so it is a warning.
    private static func pointEntry(_ entry: String, in index: String, to stateName: String) {
        let temporary = "\(entry).\(getpid()).new"
        do {
            try ensureDirectory(indexDirectory, mode: 0o755)
            try ensureDirectory(index, mode: 0o755)
            try removeFile(temporary)  // one a killed jaild of this pid left
            try makeSymlink("\(directory)/\(stateName).state", at: temporary)
            do { try renameFile(temporary, to: entry) } catch {
                discardFile(temporary)
                throw error
            }
        } catch {
            log.warning("cannot index \(entry): \(error)")
        }
    }

    /// The state that the index entry names, if it is still the entry's (`matches`).
    static func indexed(_ entry: String, matches: (JailState) -> Bool) -> (name: String, state: JailState)? {
        guard let target = ProcessIdentity.link(entry), target.hasPrefix(directory + "/"), target.hasSuffix(".state") else {
            return nil
        }
        let name = String(target.dropFirst(directory.count + 1).dropLast(6))
        guard let state = load(name: name), matches(state) else { return nil }
        return (name, state)
    }

    /// The running jail called `jailName` through the index; nil when the index does not know it.
    public static func running(named jailName: String) -> JailState? {
        guard !jailName.isEmpty, !jailName.contains("/"),
              let entry = indexed(nameEntry(jailName), matches: { $0.name == jailName }) else { return nil }
        return alive(entry.state)
    }

    /// The jail whose root is `root`, alive, through the index; nil if none (or not indexed).
    static func running(root: String) -> JailState? {
        let normalized = BindMount.normalize(root)
        guard let entry = indexed(rootEntry(root), matches: { BindMount.normalize($0.root) == normalized }) else { return nil }
        return alive(entry.state)
    }

    /// The state with `supervisor` 0 when its supervisor died and its init runs on; nil when dead.
    static func alive(_ state: JailState) -> JailState? {
        if PidFile.isLocked(state.pidFile) { return state }
        guard state.initIsAlive else { return nil }
        var orphan = state
        orphan.supervisor = 0
        return orphan
    }

    /// Every state file, with whether its jail is alive: its pid file is locked by its
    /// supervisor, or its supervisor died and its init runs on (then `supervisor` is 0).
    public static func all() -> [(state: JailState, alive: Bool)] {
        named().map { entry in
            var state = entry.state
            if PidFile.isLocked(state.pidFile) { return (state, true) }
            guard state.initIsAlive else { return (state, false) }
            state.supervisor = 0
            return (state, true)
        }
    }

    /// The state files of jails of `uid` (named `jail-UID-GID[-hash]`: only those are read).
    static func all(uid: UInt32) -> [(state: JailState, alive: Bool)] {
        named(prefix: "jail-\(uid)-").filter { $0.state.uid == uid }.map { entry in
            if let state = alive(entry.state) { return (state, true) }
            return (entry.state, false)
        }
    }

    /// Every state file with its name (the jail's cgroup name); with `prefix`, those whose
    /// name starts with it.
    static func named(prefix: String = "") -> [(name: String, state: JailState)] {
        var out: [(String, JailState)] = []
        for name in listDirectory(directory) where name.hasPrefix(prefix) {
            guard name.hasSuffix(".state"), let state = load(name: String(name.dropLast(6))) else { continue }
            out.append((String(name.dropLast(6)), state))
        }
        return out.sorted { $0.1.socket < $1.1.socket }
    }

    /// Whether the init this state names still runs: the same process, not a later one with its pid.
    var initIsAlive: Bool {
        guard let identity, initPid > 0 else { return false }
        return ProcessIdentity.of("\(initPid)") == identity
    }
}

/// What tells one process from a later one with the same pid: its start time (clock ticks
/// since boot, /proc/PID/stat field 22) and, for a jail's init, its own PID and mount
/// namespaces, which no other process on the host is PID 1 of.
public struct ProcessIdentity: Equatable, Sendable {
    public var startTime: UInt64
    public var pidNamespace: String
    public var mountNamespace: String

    /// The identity of `pid` now, seen through `proc` (the host's /proc, or the jail's own).
    public static func of(_ pid: String, proc: String = "/proc") -> ProcessIdentity? {
        guard let stat = try? readFile("\(proc)/\(pid)/stat"), let start = startTime(stat: stat),
              let pidns = link("\(proc)/\(pid)/ns/pid"), let mntns = link("\(proc)/\(pid)/ns/mnt")
        else { return nil }
        return ProcessIdentity(startTime: start, pidNamespace: pidns, mountNamespace: mntns)
    }

    /// Field 22 of /proc/PID/stat; the command name (field 2) may hold spaces and parentheses,
    /// so fields are counted from the last ')'.
    static func startTime(stat: [UInt8]) -> UInt64? {
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
        // After ')' come field 3 (state) onwards: field 22 is the 20th.
        guard fields.count >= 20 else { return nil }
        return UInt64(String(decoding: fields[19], as: UTF8.self))
    }

    /// Where the symlink at `path` points; nil when it is gone (its process exited, the entry
    /// was replaced) or not this caller's to read (another user's process): not the same process then.
    static func link(_ path: String) -> String? {
        do { return try readSymlink(path) } catch { return nil }
    }
}
