import JailIO
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What the kernel does to a jail that the operator must see in jaild's log: an OOM kill in its
/// memory cgroup (`oom_kill` of v1 `memory.oom_control` / v2 `memory.events`) and its pids limit
/// reached (`max` of `pids.events`, v1 and v2). The supervisor, host root outside the jail,
/// reads the counters only when the kernel says they may have changed, so an idle jail's
/// supervisor never wakes for them (2,000 tenants on a host, issue 36):
/// - v2 `pids.events` and `memory.events`: the kernel notifies a change (cgroup_file_notify →
///   fsnotify IN_MODIFY): one inotify descriptor watches them all.
/// - v1 `pids.events`: read once a second (`periodMilliseconds`). Since Linux 6.12 pids_event()
///   notifies only on the default hierarchy (measured on 6.18: an inotify watch of a v1
///   `pids.events` stays silent while its `max` counts refused forks), and a watch that may
///   never fire would lose the line; there is no other v1 notification of a refused fork.
/// - v1 `memory.oom_control` has no fsnotify: an eventfd registered through the leaf's
///   `cgroup.event_control` ("EFD OOM_CONTROL_FD") counts the memcg's OOMs. The kernel signals
///   it before it picks and kills the victim, so after it fires the counters are read again
///   every `followUpMilliseconds` until the kill shows (at most `followUpLimitMilliseconds`).
/// Which files exist is decided once, at start; a file that is missing (its controller is off)
/// is not looked at again. A watch that cannot be set up is one warning line, and those files
/// are then read once a second (`periodMilliseconds`), as before.
/// The OOM victim's name and pid come from the kernel log (`/dev/kmsg`, read non-blocking and
/// bounded per check): the kernel's `oom-kill:` record names the victim's memory cgroup, so only
/// this jail's victims are taken. A victim the record was missed for (ring buffer overrun,
/// kmsg unreadable) is logged with the count alone.
struct CgroupEvents {
    /// `…/jail/NAME/{init,programs,sessions}` of every hierarchy: v1 counters are per cgroup.
    let leaves: [String]
    /// The memory cgroup path the kernel prints for this jail's victims (`/jail/NAME/`).
    let memcgPrefix: String
    /// The counter files that exist, found once at start.
    let oomFiles: [String]
    let pidsFiles: [String]
    var oomKills: Int
    var pidsMax: Int
    var kmsg: Int32 = -1
    /// IN_MODIFY of `pids.events` and v2 `memory.events`; -1 when none exist (or the fallback).
    var inotify: Int32 = -1
    /// One eventfd per v1 `memory.oom_control`.
    var oomEventfds: [Int32] = []
    /// Files without a kernel notification (v1 `pids.events`, or a watch's setup failed): all
    /// counters are read every `periodMilliseconds`.
    var polledFiles = false
    /// When to read the counters next without a notification; nil for never.
    var nextCheck: Int64?
    /// After a v1 OOM notification: until when the counters are read again for the kill.
    var followUpUntil: Int64 = 0
    /// The kernel log was not read to its end (bounded per check): go on at once.
    var kmsgBehind = false
    /// `oom-kill:` records of this jail read before their kill was counted (kept a little while).
    var pendingVictims: [(pid: String, name: String)] = []
    static let periodMilliseconds: Int64 = 1000
    static let followUpMilliseconds: Int64 = 50
    static let followUpLimitMilliseconds: Int64 = 3000
    /// Kernel log records read per check at most, so a flood of them never holds the supervisor.
    static let kmsgRecordsPerTick = 2048

    init(_ cgroups: JailCgroups) {
        let leaves = cgroups.directories.flatMap { directory in JailCgroups.leaves.map { "\(directory)/\($0)" } }
        self.leaves = leaves
        memcgPrefix = "/jail/\(cgroups.name)/"
        oomFiles = leaves.flatMap { leaf in
            ["\(leaf)/memory.oom_control", "\(leaf)/memory.events"].filter { isAccessible($0, R_OK) }
        }
        pidsFiles = leaves.map { "\($0)/pids.events" }.filter { isAccessible($0, R_OK) }
        oomKills = 0
        pidsMax = 0
        if !oomFiles.isEmpty {
            do {
                let opened = try openFile("/dev/kmsg", O_RDONLY | O_NONBLOCK)
                kmsg = opened.rawValue
                // From now on: the kills before this supervisor are not news (and not this jail's to name).
                do { _ = try opened.seek(offset: 0, from: .end) } catch {
                    log.warning("cannot skip the kernel log's past: its OOM kills of this jail are named again: \(error)")
                }
            } catch {
                log.warning("cannot read /dev/kmsg: OOM kills are logged without the victim's name: \(error)")
            }
        }
        setUpWatches(unified: cgroups.unifiedDirectory)
        // What happened before this supervisor (an adopted jail's earlier kills) is not news.
        // Read after the watches are set, so nothing between the two is missed.
        oomKills = countOOMKills()
        pidsMax = countPidsMax()
    }

    /// The inotify watches and v1 OOM eventfds; on a failure one warning, then the periodic read.
    mutating func setUpWatches(unified: String?) {
        let isUnified = { (file: String) in unified.map { file.hasPrefix("\($0)/") } ?? false }
        let notified = pidsFiles.filter(isUnified) + oomFiles.filter { $0.hasSuffix("/memory.events") }
        polledFiles = pidsFiles.contains { !isUnified($0) }
        if !notified.isEmpty {
            do throws(SystemError) {
                inotify = try watchModifications(of: notified).rawValue
            } catch {
                log.warning("cannot watch the jail's cgroup event files, reading them once a second instead: \(error)")
                polledFiles = true
            }
        }
        for file in oomFiles where file.hasSuffix("/memory.oom_control") {
            do throws(SystemError) {
                oomEventfds.append(try Self.registerOOMEventfd(controlFile: file))
            } catch {
                log.warning("cannot register for the OOM notification of \(file), reading it once a second instead: \(error)")
                polledFiles = true
            }
        }
        if polledFiles { nextCheck = monotonicMilliseconds() + Self.periodMilliseconds }
    }

    /// cgroup v1's OOM notification: an eventfd written to `cgroup.event_control` with the
    /// `memory.oom_control` descriptor; the kernel signals the eventfd on each OOM of the
    /// memcg or an ancestor. The control file's descriptor is not needed afterwards.
    static func registerOOMEventfd(controlFile: String) throws(SystemError) -> Int32 {
        let eventfd = try makeEventCounter().rawValue
        do throws(SystemError) {
            let control = try openFile(controlFile, O_RDONLY)
            defer { control.closeQuietly() }
            let eventControl = "\(controlFile.dropLast("memory.oom_control".count))cgroup.event_control"
            try writeKernelFile(eventControl, "\(eventfd) \(control.rawValue)")
            return eventfd
        } catch {
            closeDescriptor(eventfd)
            throw error
        }
    }

    /// Adds the watch descriptors to the poll set; returns their indexes for `check(after:)`.
    func add(to poller: inout Poller) -> [Int] {
        (inotify >= 0 ? [inotify] : []).map { poller.add($0, read: true) } + oomEventfds.map { poller.add($0, read: true) }
    }

    /// Until the next check without a notification (-1 for none), for the poll loop's timeout.
    func timeout(now: Int64) -> Int32 {
        if kmsgBehind { return 0 }
        var deadline = nextCheck
        if now < followUpUntil { deadline = min(deadline ?? Int64.max, now + Self.followUpMilliseconds) }
        guard let deadline else { return -1 }
        return Int32(clamping: max(0, deadline - now))
    }

    /// After the poll: logs each new OOM kill and each pids limit reached, if a watch fired, the
    /// periodic or follow-up check is due, or `force` (the jail's end).
    mutating func check(jail: String, poller: Poller, indexes: [Int], now: Int64, force: Bool = false) {
        var due = force || kmsgBehind || followUpUntil > 0
        for (position, index) in indexes.enumerated() where poller.readable(index) {
            due = true
            drain(descriptor(at: position), now: now)
        }
        if let next = nextCheck, now >= next {
            due = true
            nextCheck = now + Self.periodMilliseconds
        }
        guard due else { return }
        if followUpUntil > 0 && now >= followUpUntil { followUpUntil = 0 }
        report(jail: jail)
    }

    /// Empties a fired descriptor (its inotify events or the eventfd's count); an OOM
    /// notification starts the follow-up reads.
    mutating func drain(_ fd: Int32, now: Int64) {
        // Non-blocking: until EAGAIN. A read that fails leaves the events to the counters,
        // which are read all the same below.
        while let chunk = try? FileDescriptor(rawValue: fd).readChunk(max: 4096), !chunk.isEmpty {}
        if fd != inotify { followUpUntil = now + Self.followUpLimitMilliseconds }
    }

    /// The descriptor `add(to:)` added at `position` of the indexes it returned.
    func descriptor(at position: Int) -> Int32 {
        ((inotify >= 0 ? [inotify] : []) + oomEventfds)[position]
    }

    mutating func report(jail: String) {
        // The counter first: the kernel writes a kill's `oom-kill:` record before it counts the
        // kill, so a count read before the records has its records among them. Read the other
        // way round, a kill that came between the two reads was logged without its process.
        let oom = countOOMKills()
        pendingVictims = Array((pendingVictims + readKernelVictims()).suffix(64))
        if oom > oomKills {
            let new = oom - oomKills
            let victims = Array(pendingVictims.suffix(new))
            pendingVictims = []
            followUpUntil = 0
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
        oomFiles.reduce(0) { $0 + (Self.counter("oom_kill", in: $1) ?? 0) }
    }

    func countPidsMax() -> Int {
        pidsFiles.reduce(0) { $0 + (Self.counter("max", in: $1) ?? 0) }
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
        kmsgBehind = false
        guard kmsg >= 0 else { return [] }
        var victims: [(pid: String, name: String)] = []
        for record in 0...Self.kmsgRecordsPerTick {
            if record == Self.kmsgRecordsPerTick {
                kmsgBehind = true  // more to read: on with it at the next turn of the loop
                break
            }
            let chunk: [UInt8]?
            do { chunk = try FileDescriptor(rawValue: kmsg).readChunk(max: 8192) } catch {
                if error.errno == .brokenPipe { continue }  // overwritten before it was read: on to the next
                break
            }
            guard let chunk, !chunk.isEmpty else { break }
            let record = String(decoding: chunk, as: UTF8.self)
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
        for fd in [kmsg, inotify] + oomEventfds where fd >= 0 { closeDescriptor(fd) }
    }
}
