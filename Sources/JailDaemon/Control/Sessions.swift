import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `jaild sessions [JAIL] [--json]` and `jaild sessions JAIL --kill ID`: the live sessions, seen
/// from the host by root.
///
/// Where the data comes from: each session helper holds its record in a sealed memfd (see
/// SessionRecord.publish). This command finds the helpers as the children of the jail's init
/// that run init's own executable (a program inside cannot: jaild's binary is not in the jail,
/// so a process that merely names itself "jaild: [...]" is not taken), and reads each record
/// through /proc/PID/fd, which only the host's root can do (the helper is not dumpable). No
/// host directory is shared with the jail, init answers nothing, and a dead helper has no
/// record to go stale. The live parts come from /proc: the program's host pid (the helper's
/// child) and the idle time (the pty's access time, as `w` computes it).
public enum Sessions {
    public struct Live: Sendable {
        public var jail: String
        var record: PublishedSession
        public var helperPid: Int32
        /// The program's pid on the host (also its process group), 0 if it is gone.
        public var programPid: Int32
        /// Seconds since the pty was last used; nil for stdio sessions.
        public var idleSeconds: Int64?
        /// The client's pid on the host (the record has it only as the jail sees it: 0).
        public var peerPid: Int32?

        public var id: Int { record.id }
        public var tty: String { record.tty }
    }

    public static func list(_ spec: String?, json: Bool) -> Int32 {
        guard getuid() == 0 else { return refuse("only root may list a jail's sessions") }
        let jails: [JailState]
        if let spec {
            guard let state = Control.runningJailOrSay(spec) else { return 1 }
            jails = [state]
        } else {
            jails = JailState.all().filter(\.alive).map(\.state)
        }
        let sessions = jails.flatMap(live)
        print(json ? self.json(sessions) : table(sessions), terminator: "")
        return 0
    }

    /// SIGHUP to the session's process group (as a terminal hangup), SIGKILL after 5 s.
    public static func kill(_ spec: String, id: Int, graceSeconds: Int32 = 5) -> Int32 {
        guard getuid() == 0 else { return refuse("only root may end a jail's sessions") }
        guard let state = Control.runningJailOrSay(spec) else { return 1 }
        guard let session = live(state).first(where: { $0.id == id }) else {
            JailLogHandler.emitToTerminal("jail \(state.name) has no session \(id)")
            return 1
        }
        cj_openlog("jaild")
        cj_syslog(LOG_NOTICE, Logfmt.line("session kill", [("jail", state.name), ("id", "\(id)"), ("by_uid", "\(getuid())"),
                                                           ("program_pid", "\(session.programPid)"),
                                                           ("peer_pid", session.peerPid.map { "\($0)" } ?? "?")]))
        // Opened before the hangup (nil: the helper is gone already; its program's group still
        // gets the hangup, and there is nothing to wait for).
        let helper = try? openProcess(session.helperPid)
        defer { helper.map { closeDescriptor($0.rawValue) } }
        do {
            if session.programPid > 0 {
                try sendSignal(SIGHUP, to: -session.programPid)
                try sendSignal(SIGCONT, to: -session.programPid)
            }
            guard let helper else { return 0 }
            if try !waitForExit(helper, milliseconds: graceSeconds * 1000) && session.programPid > 0 {
                cj_syslog(LOG_NOTICE, Logfmt.line("session kill", [("jail", state.name), ("id", "\(id)"), ("signal", "KILL")]))
                try sendSignal(SIGKILL, to: -session.programPid)
            }
        } catch {
            return refuse("cannot end session \(id) of jail \(state.name): \(error)")
        }
        return 0
    }

    /// A session helper of a jail and its record, as init knows it.
    struct Helper {
        let pid: Int32
        let record: PublishedSession
    }

    /// The session helpers of a jail: the children of its init that run init's own executable
    /// and hold a session record. `jaild list` counts these, `jaild sessions` lists them: no
    /// process title makes a session (the jail user can give its own processes any title).
    static func helpers(of state: JailState) -> [Helper] {
        let initDirectory = ProcessDirectory(state.initPid)
        let children = initDirectory.children.map(ProcessDirectory.init)
        return helpers(initDirectory: initDirectory, children: children)
    }

    /// `helpers(of:)` with init's directory and its children's opened by the caller.
    static func helpers(initDirectory: ProcessDirectory, children: [ProcessDirectory]) -> [Helper] {
        guard let initExe = initDirectory.status("exe") else { return [] }
        return children.compactMap { child in
            guard let exe = child.status("exe"), exe.st_dev == initExe.st_dev, exe.st_ino == initExe.st_ino,
                  !notSessionTitles.contains(child.title),
                  let text = record(of: child), let record = PublishedSession.decode(text) else { return nil }
            return Helper(pid: child.pid, record: record)
        }
    }

    /// The titles of init's children that run jaild and are no session (yet): their
    /// descriptors are not searched for a record, which is most of the cost of a jail's row.
    /// The title is trusted here only to skip: these processes run init's executable (checked
    /// first), are not dumpable, and whoever could change their title could as well forge or
    /// hide a record. A spare takes the title `jaild: session` before it publishes one.
    static let notSessionTitles: Set<String> = [ProcessTitle.spare, ProcessTitle.syslogRelay, ProcessTitle.payload,
                                                ProcessTitle.payloadBoot]

    /// The status of a file of /proc of another process: nil when it is gone (it exited meanwhile)
    /// or not this caller's to look at (`jaild list` by a user), which are answers here, not failures.
    static func procStatus(_ path: String) -> stat? {
        do { return try fileStatusFollowingLinks(path) } catch { return nil }
    }

    /// The sessions of one jail, by id.
    public static func live(_ state: JailState) -> [Live] {
        helpers(of: state).map { helper in
            let record = helper.record
            let program = children(of: helper.pid).first ?? 0
            var idle: Int64?
            if record.tty.hasPrefix("/dev/pts/") {
                let tty = record.tty
                // The jail's devpts, as the host sees it through init's root.
                if let info = procStatus("/proc/\(state.initPid)/root\(tty)") {
                    idle = max(0, wallClockSeconds() - Int64(max(info.st_atim.tv_sec, info.st_mtim.tv_sec)))
                }
            }
            let peer = record.connectionFD.flatMap { hostPeerPid(helper: helper.pid, fd: $0) }
            return Live(jail: state.name, record: record, helperPid: helper.pid, programPid: program, idleSeconds: idle,
                        peerPid: peer)
        }.sorted { $0.id < $1.id }
    }

    /// The client's pid as the host sees it: SO_PEERCRED read here, in the host's PID
    /// namespace, on a copy of the helper's connection (pidfd_getfd; root may, as the
    /// helper's ancestor's owner, though the helper is not dumpable).
    static func hostPeerPid(helper: Int32, fd: Int32) -> Int32? {
        // nil (the table's "?") when the helper is gone or its connection is: the peer is then unknown.
        guard let pidfd = try? openProcess(helper) else { return nil }
        defer { closeDescriptor(pidfd.rawValue) }
        guard let copy = try? copyDescriptor(fd, ofProcess: pidfd) else { return nil }
        defer { closeDescriptor(copy.rawValue) }
        guard let peer = try? UnixSocket.peerCredentials(copy), peer.pid > 0 else { return nil }
        return peer.pid
    }

    /// The helper's session record: the memfd named `jail-session` among its descriptors.
    static func record(of helper: ProcessDirectory) -> String? {
        do {
            guard let bytes = try helper.memfdRecord(prefix: "/memfd:" + SessionRecord.memfdName) else { return nil }
            return String(String(decoding: bytes, as: UTF8.self)[...].trimmingWhitespace())
        } catch {
            log.warning("cannot read the session record of session helper \(helper.pid): \(error)")
            return nil
        }
    }

    static func table(_ sessions: [Live]) -> String {
        var lines = [["JAIL", "ID", "USER", "TTY", "FROM", "STARTED", "IDLE", "PID", "COMMAND"]]
        for s in sessions {
            let r = s.record
            lines.append([s.jail, "\(s.id)", r.user, s.tty, r.from, clock(r.started),
                          s.idleSeconds.map { "\($0)s" } ?? "-", "\(s.programPid)", Logfmt.quote(r.command)])
        }
        return TextTable.render(lines)
    }

    static func json(_ sessions: [Live]) -> String {
        let objects = sessions.map { s in
            let r = s.record
            // -1: an id the record does not have (a peer the helper could not read), as before.
            return "{\"jail\":\(Logfmt.json(s.jail)),\"id\":\(s.id),\"user\":\(Logfmt.json(r.user)),"
                + "\"uid\":\(r.uid.map { Int64($0) } ?? -1),\"peer_uid\":\(r.peerUid.map { Int64($0) } ?? -1),"
                + "\"peer_pid\":\(s.peerPid.map { "\($0)" } ?? "null"),"
                + "\"tty\":\(Logfmt.json(s.tty)),\"from\":\(Logfmt.json(r.from)),"
                + "\"started\":\(r.started),"
                + "\"idle_seconds\":\(s.idleSeconds.map { "\($0)" } ?? "null"),\"pid\":\(s.programPid),"
                + "\"helper_pid\":\(s.helperPid),\"command\":\(Logfmt.json(r.command))}"
        }
        return "[" + objects.joined(separator: ",") + "]\n"
    }

    /// `HH:MM:SS` UTC of a unix time.
    static func clock(_ t: Int64) -> String {
        guard let time = UTCTime(secondsSinceEpoch: t) else { return "\(t)" }
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(two(time.hour)):\(two(time.minute)):\(two(time.second))"
    }

    static func refuse(_ message: String) -> Int32 {
        JailLogHandler.emitToTerminal(message)
        return 1
    }
}
