import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What the kernel does to a jail that the operator must see in jaild's log: an OOM kill in its
/// memory cgroup (`oom_kill` of v1 `memory.oom_control` / v2 `memory.events`) and its pids limit
/// reached (`max` of `pids.events`, v1 and v2). The supervisor, host root outside the jail,
/// reads the counters once a second from its poll loop (a deadline, never a sleep): a handful
/// of small reads, where an eventfd (v1) and POLLPRI (v2) would be one mechanism per version.
/// The OOM victim's name and pid come from the kernel log (`/dev/kmsg`, read non-blocking and
/// bounded per tick): the kernel's `oom-kill:` record names the victim's memory cgroup, so only
/// this jail's victims are taken. A victim the record was missed for (ring buffer overrun,
/// kmsg unreadable) is logged with the count alone.
struct CgroupEvents {
    /// `…/jail/NAME/{init,programs,sessions}` of every hierarchy: v1 counters are per cgroup.
    let leaves: [String]
    /// The memory cgroup path the kernel prints for this jail's victims (`/jail/NAME/`).
    let memcgPrefix: String
    var oomKills: Int
    var pidsMax: Int
    var kmsg: Int32
    var nextCheck: Int64
    static let periodMilliseconds: Int64 = 1000
    /// Kernel log records read per tick at most, so a flood of them never holds the supervisor.
    static let kmsgRecordsPerTick = 2048

    init(_ cgroups: JailCgroups) {
        leaves = cgroups.directories.flatMap { directory in JailCgroups.leaves.map { "\(directory)/\($0)" } }
        memcgPrefix = "/jail/\(cgroups.name)/"
        oomKills = 0
        pidsMax = 0
        kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if kmsg >= 0 { lseek(kmsg, 0, SEEK_END) } else { log.warning("cannot read /dev/kmsg: OOM kills are logged without the victim's name: \(Errno(rawValue: errno))") }
        nextCheck = monotonicMilliseconds() + Self.periodMilliseconds
        // What happened before this supervisor (an adopted jail's earlier kills) is not news.
        oomKills = countOOMKills()
        pidsMax = countPidsMax()
    }

    /// Until the next check, for the poll loop's timeout.
    func timeout(now: Int64) -> Int32 { Int32(clamping: max(0, nextCheck - now)) }

    /// Once the period has passed: logs each new OOM kill and each pids limit reached.
    /// `force`: now, whatever the period (the jail's end).
    mutating func check(jail: String, now: Int64, force: Bool = false) {
        guard force || now >= nextCheck else { return }
        nextCheck = now + Self.periodMilliseconds
        var victims = readKernelVictims()
        let oom = countOOMKills()
        if oom > oomKills {
            let new = oom - oomKills
            victims = Array(victims.suffix(new))
            for index in 0..<new {
                var fields = [("jail", jail), ("oom_kill", "\(oomKills + index + 1)")]
                if index < victims.count { fields += [("pid", victims[index].pid), ("process", victims[index].name)] }
                fields += memoryFigures()
                log.warning("\(Logfmt.line("oom kill", fields))")
            }
            oomKills = oom
        }
        let pids = countPidsMax()
        if pids > pidsMax {
            log.warning("\(Logfmt.line("pids limit reached", [("jail", jail), ("refused_forks", "\(pids - pidsMax)"), ("total", "\(pids)")] + pidsFigures()))")
            pidsMax = pids
        }
    }

    func countOOMKills() -> Int {
        leaves.reduce(0) { sum, leaf in
            sum + (Self.counter("oom_kill", in: "\(leaf)/memory.oom_control") ?? Self.counter("oom_kill", in: "\(leaf)/memory.events") ?? 0)
        }
    }

    func countPidsMax() -> Int {
        leaves.reduce(0) { $0 + (Self.counter("max", in: "\($1)/pids.events") ?? 0) }
    }

    /// The programs cgroup's charge and limit (v1 or v2), in bytes.
    func memoryFigures() -> [(String, String)] {
        for leaf in leaves where leaf.hasSuffix("/programs") {
            if let usage = readNumber("\(leaf)/memory.usage_in_bytes") {
                return [("memory_bytes", "\(usage)"), ("limit_bytes", Self.text("\(leaf)/memory.limit_in_bytes")),
                        ("max_bytes", Self.text("\(leaf)/memory.max_usage_in_bytes"))]
            }
            if let usage = readNumber("\(leaf)/memory.current") {
                return [("memory_bytes", "\(usage)"), ("limit_bytes", Self.text("\(leaf)/memory.max")),
                        ("max_bytes", Self.text("\(leaf)/memory.peak"))]
            }
        }
        return []
    }

    func pidsFigures() -> [(String, String)] {
        for leaf in leaves where leaf.hasSuffix("/programs") {
            if let current = readNumber("\(leaf)/pids.current") { return [("pids", "\(current)"), ("limit", Self.text("\(leaf)/pids.max"))] }
        }
        return []
    }

    /// The `oom-kill:` records of this jail's cgroups since the last read: pid and name.
    mutating func readKernelVictims() -> [(pid: String, name: String)] {
        guard kmsg >= 0 else { return [] }
        var victims: [(pid: String, name: String)] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        for _ in 0..<Self.kmsgRecordsPerTick {
            let count = buffer.withUnsafeMutableBytes { read(kmsg, $0.baseAddress, $0.count) }
            if count < 0 && errno == EPIPE { continue }  // overwritten before it was read: on to the next
            if count <= 0 { break }
            let record = String(decoding: buffer[0..<count], as: UTF8.self)
            if let victim = Self.victim(record: record, memcgPrefix: memcgPrefix) { victims.append(victim) }
        }
        return victims
    }

    /// From `PRI,SEQ,TS,-;oom-kill:…,task_memcg=/jail/NAME/programs,task=COMM,pid=N,uid=U`: the
    /// victim if its cgroup is this jail's. COMM is the jail's to choose (16 bytes, any bytes):
    /// the kernel's fields around it are found from the left (`task_memcg=`) and the right (the
    /// last `,pid=`), and the name is escaped by Logfmt when logged.
    static func victim(record: String, memcgPrefix: String) -> (pid: String, name: String)? {
        guard let semicolon = record.firstIndex(of: ";") else { return nil }
        let message = record[record.index(after: semicolon)...]
        guard message.hasPrefix("oom-kill:"), let memcg = message.firstRange(of: ",task_memcg="),
              let task = message[memcg.upperBound...].firstRange(of: ",task="),
              message[memcg.upperBound..<task.lowerBound].hasPrefix(memcgPrefix),
              let pid = message[task.upperBound...].ranges(of: ",pid=").last else { return nil }
        let name = String(message[task.upperBound..<pid.lowerBound])
        let digits = message[pid.upperBound...].prefix { $0.isNumber }
        return (String(digits), name)
    }

    /// `KEY N` in a flat-keyed cgroup file.
    static func counter(_ key: String, in path: String) -> Int? {
        guard let text = try? readText(path) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2 && parts[0] == key { return Int(parts[1]) }
        }
        return nil
    }

    static func text(_ path: String) -> String {
        ((try? readText(path)) ?? "").split(separator: "\n").first.map(String.init) ?? ""
    }

    func close() {
        if kmsg >= 0 { Glibc.close(kmsg) }
    }
}
