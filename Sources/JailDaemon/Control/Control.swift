import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `jaild list`, `jaild stop SPEC`, `jaild status SPEC`: the running jails, seen from the host.
/// SPEC is a running jail's name (its config's or `--jail-name`), a socket path, a pid file path, or UID:GID.
public enum Control {
    public static func list(json: Bool) -> Int32 {
        let isRoot = getuid() == 0
        let rows = Row.running(isRoot: isRoot, network: json)
        print(json ? Row.json(rows) : Row.table(rows), terminator: "")
        for row in rows where row.viewsBroken {
            JailLogHandler.emitToTerminal("warning: jail \(row.state.name): its lxcfs files (/proc/meminfo, uptime …) fail with "
                + "ENOTCONN: lxcfs stopped or restarted; its supervisor binds them again within "
                + "\(LxcfsWatch.period / 1000) s of lxcfs being back (start lxcfs; else restart the jail)")
        }
        return 0
    }

    /// LSB's codes for a status action: 0 running, 3 not running, 4 unknown (SPEC names no jail).
    public static func status(_ spec: String) -> Int32 {
        guard let pidFile = lookup(spec).pidFile else {
            unknown(spec)
            return 4
        }
        if let pid = PidFile.runningPid(path: pidFile) {
            print("running: \(spec) (pid \(pid))")
            return 0
        }
        if let orphan = JailState.named().first(where: { $0.state.pidFile == pidFile }), orphan.state.initIsAlive {
            print("running without a supervisor: \(spec) (init pid \(orphan.state.initPid); the next jaild for it adopts it)")
            return 0
        }
        print("not running: \(spec)")
        return 3
    }

    /// SIGTERM to the supervisor, then waits until it is gone (it has stopped the jail).
    /// `stateName`: the jail's state file, when the caller knows it (`jaild destroy`), read
    /// alone if the supervisor is gone, instead of every jail's.
    public static func stop(_ spec: String, timeoutSeconds: Int32 = 120, stateName: String? = nil) -> Int32 {
        // A running jail by any of its names first (a `--jail-name` needs no config), then a
        // SPEC that names a pid file whether or not its jail runs. A pid file is its own answer
        // (a running jail found by it has that pid file): no state file is read.
        guard let pidFile = spec.hasSuffix(".pid") ? spec : lookup(spec).pidFile else {
            unknown(spec)
            return 1
        }
        guard let pid = PidFile.runningPid(path: pidFile) else {
            return stopOrphan(pidFile: pidFile, timeoutSeconds: timeoutSeconds, stateName: stateName)
        }
        // No such process: it has exited. The pid file must still be held after the pidfd exists, or the pid may be another's.
        let pidfd: FileDescriptor
        do { pidfd = try openProcess(pid) } catch {
            if error.errno == .noSuchProcess { return 0 }
            JailLogHandler.emitToTerminal("cannot stop jaild (pid \(pid)): \(error)")
            return 1
        }
        defer { closeDescriptor(pidfd.rawValue) }
        guard PidFile.runningPid(path: pidFile) == pid else { return 0 }
        let stopped: Bool
        do { stopped = try sendSignal(SIGTERM, toProcess: pidfd) ? waitForExit(pidfd, milliseconds: timeoutSeconds * 1000) : true } catch {
            JailLogHandler.emitToTerminal("cannot signal jaild (pid \(pid)): \(error.errno)")
            return 1
        }
        if !stopped {
            JailLogHandler.emitToTerminal("jaild (pid \(pid)) did not stop within \(timeoutSeconds) s")
            return 1
        }
        return 0
    }

    static func unknown(_ spec: String) {
        JailLogHandler.emitToTerminal("no jail is named '\(spec)': give its name, its socket, its pid file or UID:GID")
    }

    /// The pid file a SPEC names.
    static func pidFile(for spec: String) -> String? {
        if spec.hasSuffix(".pid") { return spec }
        if spec.hasSuffix(".sock") { return String(spec.dropLast(5)) + ".pid" }
        let ids = spec.split(separator: ":")
        if ids.count == 2, let uid = UInt32(ids[0]), let gid = UInt32(ids[1]) {
            return SocketLocation(prefix: nil, uid: uid, gid: gid).pidPath
        }
        return Provision.pidFile(ofJail: spec, paths: .fromEnvironment())
    }
}

/// One running jail as `jaild list` shows it.
struct Row {
    let state: JailState
    /// nil when the caller is not root: the records are readable by root only.
    let sessions: Int?
    let uptime: Int64
    /// The memory cgroup's charge, or where the jail has none the processes' RSS sum.
    let memory: UInt64
    /// "cgroup" or "rss": where `memory` comes from.
    let memorySource: String
    /// `--disk` usage against its limit (nil: no limit).
    let disk: DiskUsage?
    /// `--init`: the payload's phase (starting, running, stopping, stopped) from init's record;
    /// nil without `--init` or when the caller is not root.
    let payload: String?

    /// Every running jail's row (RunningJails: on as many threads as there are CPUs; at 2,000
    /// jails these reads were most of the time). `network`: read the network counters (only
    /// `--json` prints them).
    static func running(isRoot: Bool, network: Bool) -> [Row] {
        RunningJails.map { Row(state: $0, isRoot: isRoot, network: network, cgroupParents: $1) }
    }

    /// `cgroupParents`: what the parents of the jail's cgroups enable (nil: every file is tried).
    init(state: JailState, isRoot: Bool = getuid() == 0, network: Bool = false, cgroupParents: CgroupParents? = nil) {
        self.state = state
        self.network = network ? NetworkCounters.read(state: state).map { ($0.rxBytes, $0.txBytes) } : nil
        // /proc/INIT and /proc/CHILD opened once each (closed with the last reference); every
        // file of them is read relative to these (ProcessDirectory).
        let initDirectory = ProcessDirectory(state.initPid)
        let initChildren = initDirectory.children.map(ProcessDirectory.init)
        // As `jaild sessions` finds them (by init's executable and the session record), not by
        // title: any process of the jail user may call itself "jaild: [9] /dev/pts/9".
        sessions = isRoot ? Sessions.helpers(initDirectory: initDirectory, children: initChildren).count : nil
        uptime = max(0, wallClockSeconds() - state.started)
        if let charge = CgroupFigures(directories: state.cgroups, parents: cgroupParents).memoryCharge {
            (memory, memorySource) = (charge, "cgroup")
        } else {
            let descendantsBytes = initChildren.reduce(UInt64(0)) { sum, child in
                // The spare and the syslog relay have no children to look for.
                let below = ProcessTitle.childless.contains(child.title) ? [] : child.children.flatMap { [$0] + descendants(of: $0) }
                return sum + child.residentBytes + below.reduce(0) { $0 + residentBytes(of: $1) }
            }
            memory = initDirectory.residentBytes + descendantsBytes
            memorySource = "rss"
        }
        disk = DiskUsage.of(root: state.root, initPid: state.initPid)
        viewsBroken = isRoot && initDirectory.statusError("root/proc/meminfo") == .socketNotConnected
        payload = isRoot && Self.mayHavePayload(state, cgroupParents) ? PayloadRecord.phase(initDirectory: initDirectory) : nil
    }

    /// Whether the jail may run `--init`: its unified cgroup has `programs/payload`
    /// (JailCgroups.delegatePayload). One stat instead of a readlink of each of init's
    /// descriptors, for every jail `jaild list` shows; without a v2 cgroup in the state, the walk.
    /// With `cgroupParents` (`jaild list` of every jail), the stat is of `programs`, whose link
    /// count is 2 + its subdirectories in cgroupfs: a name cgroupfs does not have (`payload`
    /// of nearly every jail) costs it a second, locked walk (4.0 against 1.7 µs, measured). A
    /// subdirectory other than `payload` only costs the walk of init's descriptors, which then
    /// finds no record, as for a jail without `--init`.
    static func mayHavePayload(_ state: JailState, _ cgroupParents: CgroupParents? = nil) -> Bool {
        guard !state.cgroup.isEmpty else { return true }
        if let cgroupParents { return (cgroupParents.status("programs", in: state.cgroup)?.st_nlink ?? 0) > 2 }
        var info = stat()
        return stat("\(state.cgroup)/programs/payload", &info) == 0
    }

    /// The kernel's counts of the jail's network bytes (NetworkCounters); nil where it has
    /// none, or they were not asked for.
    let network: (rxBytes: UInt64, txBytes: UInt64)?

    /// Its lxcfs files fail with ENOTCONN (lxcfs stopped or restarted; LxcfsWatch).
    let viewsBroken: Bool

    static func table(_ rows: [Row]) -> String {
        let header = ["NAME", "SOCKET", "UID:GID", "ROOT", "INIT", "SESSIONS", "UPTIME", "MEMORY", "PORTS", "ADDRESS", "RC", "USERNS", "DISK", "SYSTEM"]
        // Cells made on as many threads as there are CPUs, as the rows were (Parallel).
        return TextTable.render([header] + Parallel.map(rows.count) { rows[$0].cells })
    }

    /// Its cells in the table, in the header's order.
    var cells: [String] {
        [state.name, state.socket, "\(state.uid):\(state.gid)", state.root, "\(state.initPid)",
         sessions.map { "\($0)" } ?? "-", "\(uptime)s", memoryColumn, state.ports.isEmpty ? "-" : state.ports,
         Self.addressColumn(state), state.rcStatus.map { "\($0)" } ?? "-",
         state.userRange.map { "\($0)-\(UInt64($0) + UInt64(UserRange.insideCount) - 1)" } ?? "-",
         disk?.column ?? "-", payload ?? "-"]
    }

    /// `192.0.2.10,lo=127.77.0.1`: the jail's addresses and its loopback; `-` for neither.
    static func addressColumn(_ state: JailState) -> String {
        let parts = state.addresses + (state.loopback.isEmpty ? [] : ["lo=\(state.loopback)"])
        return parts.isEmpty ? "-" : parts.joined(separator: ",")
    }

    /// KiB of the cgroup's charge; `~` before an RSS sum (no memory cgroup).
    var memoryColumn: String { (memorySource == "rss" ? "~" : "") + "\(memory / 1024)K" }

    /// `--service`s of the state file, `JPATH=HOSTPATH` each.
    static func servicesJSON(_ services: [String]) -> String {
        services.map { service in
            let equals = service.firstIndex(of: "=") ?? service.endIndex
            let host = equals == service.endIndex ? "" : String(service[service.index(after: equals)...])
            return "{\"path\":\(jsonString(String(service[..<equals]))),\"host_path\":\(jsonString(host))}"
        }.joined(separator: ",")
    }

    /// The kernel's counts of the jail's network bytes; null where it has no counters.
    static func networkJSON(_ counters: (rxBytes: UInt64, txBytes: UInt64)?) -> String {
        "\"network_rx_bytes\":\(counters.map { "\($0.rxBytes)" } ?? "null"),"
            + "\"network_tx_bytes\":\(counters.map { "\($0.txBytes)" } ?? "null")"
    }

    static func json(_ rows: [Row]) -> String {
        // Each object made on as many threads as there are CPUs (Parallel): at 2,000 rows
        // making them was a tenth of `jaild list --json`'s time.
        "[" + Parallel.map(rows.count) { rows[$0].jsonObject }.joined(separator: ",") + "]\n"
    }

    /// The row as `--json` gives it: one object, grown in place.
    var jsonObject: String {
        let s = state
        var out = "{\"name\":" + Self.jsonString(s.name) + ",\"socket\":" + Self.jsonString(s.socket)
        out.reserveCapacity(768)
        out += ",\"pid_file\":" + Self.jsonString(s.pidFile) + ",\"uid\":\(s.uid),\"gid\":\(s.gid),\"root\":" + Self.jsonString(s.root)
        out += ",\"supervisor_pid\":\(s.supervisor),\"init_pid\":\(s.initPid),\"sessions\":" + (sessions.map { "\($0)" } ?? "null")
        out += ",\"uptime_seconds\":\(uptime),\"memory_bytes\":\(memory),\"memory_source\":\"\(memorySource)\""
        out += ",\"ports\":" + Self.jsonString(s.ports) + ",\"addresses\":[" + s.addresses.map(Self.jsonString).joined(separator: ",")
        out += "],\"address_shared\":\(s.addressShared),\"loopback\":" + (s.loopback.isEmpty ? "null" : Self.jsonString(s.loopback))
        out += ",\"cgroup\":" + Self.jsonString(s.cgroup) + ",\"rc_status\":" + (s.rcStatus.map { "\($0)" } ?? "null")
        out += ",\"payload\":" + (payload.map(Self.jsonString) ?? "null") + ",\"services\":[" + Self.servicesJSON(s.services)
        out += "],\"userns_start\":" + (s.userRange.map { "\($0)" } ?? "null")
        out += ",\"userns_count\":\(s.userRange == nil ? 0 : UserRange.insideCount),\"views_broken\":\(viewsBroken),"
        out += DiskUsage.jsonFields(disk) + "," + Self.networkJSON(network) + "}"
        return out
    }

    /// Logfmt.json, whose answer for printable ASCII without `"` or `\\` (nearly every value)
    /// is the text in quotes, without a look at each Unicode scalar.
    static func jsonString(_ text: String) -> String {
        let plain = text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
        return plain ? "\"" + text + "\"" : Logfmt.json(text)
    }
}

func children(of pid: Int32) -> [Int32] {
    decimalFields(readProcFile("/proc/\(pid)/task/\(pid)/children", limit: 65536) ?? []).compactMap { Int32(exactly: $0) }
}

/// The unsigned decimal numbers of `bytes`, split at anything else. On bytes: `jaild list`
/// reads these files for every jail, and splitting Strings by Character cost most of its time.
func decimalFields(_ bytes: [UInt8]) -> [UInt64] {
    var out: [UInt64] = []
    var value: UInt64 = 0
    var inNumber = false
    for byte in bytes {
        if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
            value = value &* 10 &+ UInt64(byte - UInt8(ascii: "0"))
            inNumber = true
        } else if inNumber {
            out.append(value)
            (value, inNumber) = (0, false)
        }
    }
    if inNumber { out.append(value) }
    return out
}

func descendants(of pid: Int32) -> [Int32] {
    children(of: pid).flatMap { [$0] + descendants(of: $0) }
}

/// VmRSS of `pid`, from /proc/PID/statm's second field (ProcessDirectory.residentBytes).
func residentBytes(of pid: Int32) -> UInt64 {
    ProcessDirectory.residentBytes(statm: readProcFile("/proc/\(pid)/statm", limit: 256))
}
