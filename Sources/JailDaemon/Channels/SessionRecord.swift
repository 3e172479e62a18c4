import CJail
import JailProtocol
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// Who is in the jail: one session's record, kept by its helper.
///
/// - jaild's log gets `session start …` and `session end …` lines (logfmt: everything the
///   jail controls is escaped, see Logfmt).
/// - A pty session gets a USER_PROCESS entry in the jail's utmp/wtmp, and its DEAD_PROCESS at
///   the end (init writes it if the helper dies first).
/// - `jaild sessions` on the host reads the record from a sealed memfd the helper holds (see
///   `publish`), so the listing needs no shared directory and no request to the jail: the
///   record lives exactly as long as the helper, a crash leaves nothing stale, and nothing
///   inside the jail can change it.
struct SessionRecord {
    let jail: String
    let id: Int
    let uid: UInt32
    let user: String
    let peer: PeerCredentials?
    /// The ssh client's address from SSH_CONNECTION, else `local`.
    let from: String
    /// `/dev/pts/N`, or nil for a stdio session.
    let tty: String?
    let command: String
    let startedMilliseconds: Int64
    let startedWall: Int64
    /// The program's pid in the jail, and its utmp entry (pty sessions).
    var programPid: pid_t = 0
    /// The helper's descriptor of the client connection: `jaild sessions` reads the client's
    /// host pid through it (SO_PEERCRED read inside the jail says 0 for any host process).
    var connectionFD: Int32 = -1
    var utmp: Utmp.Entry?
    var utmpGroup: UInt32?

    static let commandLimit = 256

    init(jail: String, id: Int, account: Account, peer: PeerCredentials?, hello: Hello, tty: String?) {
        self.jail = jail
        self.id = id
        uid = account.uid
        user = account.name
        self.peer = peer
        from = Self.address(environment: hello.environment)
        self.tty = tty
        command = Logfmt.truncated(Self.command(hello: hello, shell: account.shell), bytes: Self.commandLimit)
        startedMilliseconds = monotonicMilliseconds()
        startedWall = wallClockSeconds()
    }

    /// The first word of SSH_CONNECTION (`client-ip client-port server-ip server-port`).
    static func address(environment: [String]) -> String {
        guard let pair = environment.first(where: { $0.hasPrefix("SSH_CONNECTION=") }),
              let first = pair.dropFirst(15).split(separator: " ").first, !first.isEmpty
        else { return "local" }
        return String(first.prefix(64))
    }

    /// What `-c` asked for, else the arguments, else the login shell. Bytes that are not
    /// UTF-8 are written `\xNN` (Logfmt then escapes the rest).
    static func command(hello: Hello, shell: String) -> String {
        let arguments = hello.argumentBytes.map { ByteText.display($0) }
        if let c = arguments.firstIndex(of: "-c"), c + 1 < arguments.count { return arguments[c + 1] }
        if arguments.isEmpty { return hello.login ? "-" + shell : shell }
        return ([shell] + arguments).joined(separator: " ")
    }

    var startFields: [(String, String)] {
        [("jail", jail), ("id", "\(id)"), ("uid", "\(uid)"), ("user", user), ("peer_uid", peer.map { "\($0.uid)" } ?? "?"),
         ("peer_pid", peer.map { "\($0.pid)" } ?? "?"), ("from", from), ("tty", tty ?? "stdio"), ("command", command)]
    }

    func logStart() {
        log.info("\(Logfmt.line("session start", startFields))")
    }

    /// `status`: the exit code, or `hangup` when the client went away first.
    func logEnd(status: String) {
        let elapsed = max(0, monotonicMilliseconds() - startedMilliseconds)
        let duration = "\(elapsed / 1000).\(String(repeating: "0", count: elapsed % 1000 < 10 ? 2 : elapsed % 1000 < 100 ? 1 : 0))\(elapsed % 1000)"
        log.info("\(Logfmt.line("session end", [("jail", jail), ("id", "\(id)"), ("status", status), ("duration", duration + "s")]))")
    }

    /// A refusal, logged with the reason (init logs its own: wrong uid, session cap).
    static func logRefusal(jail: String, id: Int, peer: PeerCredentials?, reason: String) {
        var fields = [("jail", jail), ("id", "\(id)")]
        if let peer { fields += [("peer_uid", "\(peer.uid)"), ("peer_pid", "\(peer.pid)")] }
        log.warning("\(Logfmt.line("session refused", fields + [("reason", reason)]))")
    }

    /// The pty session's utmp/wtmp login, as the helper's pid (the login process).
    mutating func recordLogin() {
        guard let tty else { return }
        let entry = Utmp.Entry(type: Utmp.userProcess, pid: getpid(), tty: tty, user: user,
                               host: from == "local" ? "" : from, now: Utmp.now())
        utmpGroup = Self.utmpGroup()
        Utmp.login(entry, group: utmpGroup)
        utmp = entry
    }

    func recordLogout() {
        if let utmp { Utmp.logout(utmp, group: utmpGroup) }
    }

    /// The jail's `utmp` group, if its /etc/group has one.
    static func utmpGroup() -> UInt32? {
        guard let bytes = try? readUntrustedFile("/etc/group") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        return GroupEntry.parseAll(text).first { $0.name == "utmp" }?.gid
    }

    /// The record `jaild sessions` reads: logfmt, one line, in a sealed memfd named
    /// `jail-session` that only this helper holds (close-on-exec: the program never gets it).
    /// The host's root reads it through /proc/PID/fd; inside the jail nobody can, because the
    /// helper is not dumpable and no jail process has CAP_SYS_PTRACE.
    func publish() throws(SystemError) -> Int32 {
        let fields = startFields + [("started", "\(startedWall)"), ("program_pid", "\(programPid)"),
                                    ("connection_fd", "\(connectionFD)")]
        let bytes = Array((Logfmt.line("session", fields) + "\n").utf8)
        return try sealedMemoryFile(named: Self.memfdName, bytes).rawValue
    }

    static let memfdName = "jail-session"

    /// Everything at the end of the session: the log line and the utmp logout.
    func end(status: String) {
        recordLogout()
        logEnd(status: status)
    }
}

/// A session record as `jaild sessions` reads it back from a helper's memfd: what
/// `SessionRecord.publish` writes, decoded into the type both ends agree on.
struct PublishedSession: Equatable, Sendable {
    var jail: String
    var id: Int
    var uid: UInt32?
    var user: String
    /// nil when the helper could not read its peer (written `?`).
    var peerUid: UInt32?
    var from: String
    /// `/dev/pts/N`, or `stdio`.
    var tty: String
    var command: String
    /// Unix time of the session's start.
    var started: Int64
    /// The helper's descriptor of the client connection, for the client's host pid.
    var connectionFD: Int32?

    /// nil when it is no session record (no `id`).
    static func decode(_ text: String) -> PublishedSession? {
        let fields = Logfmt.fields(text)
        guard let id = fields["id"].flatMap({ Int($0) }) else { return nil }
        return PublishedSession(jail: fields["jail"] ?? "", id: id, uid: fields["uid"].flatMap { UInt32($0) },
                                user: fields["user"] ?? "?", peerUid: fields["peer_uid"].flatMap { UInt32($0) },
                                from: fields["from"] ?? "?", tty: fields["tty"] ?? "stdio", command: fields["command"] ?? "",
                                started: fields["started"].flatMap { Int64($0) } ?? 0,
                                connectionFD: fields["connection_fd"].flatMap { Int32($0) })
    }
}
