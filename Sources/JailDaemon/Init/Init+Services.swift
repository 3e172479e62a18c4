import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The jail's own system services (issue 16): `--rc` at start and `--rc-stop` at stop, run as
/// root inside — the job of /etc/rc and /etc/rc.shutdown in the Emulab and FreeBSD jails.
/// Root inside is uid 0 of the jail: with a user namespace, a uid of the jail's range on the
/// host; without, host root with the jail's bounding set. Either way it keeps init's seccomp
/// filter and Landlock scope, and joins the jail's program cgroups like every program.
extension Init {
    /// Root as the jail's own /etc/passwd names it (only its home is taken from there).
    static func rootAccount() -> Account {
        // The jail's file, read by init (host root itself with --no-userns): never a blocking
        // open of what may be a FIFO. Unreadable means root's defaults, as a missing file does.
        var passwd = ""
        do { passwd = String(decoding: try readUntrustedFile("/etc/passwd"), as: UTF8.self) } catch {
            // Root's commands still run (an rc-stop must not wait on a FIFO): said, not silent.
            if !error.isMissing { log.warning("root's home taken as /: \(error)") }
        }
        let entry = PasswdEntry.parseAll(passwd).first { $0.uid == 0 }
        let home = entry.map(\.home).flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        return Account(name: "root", uid: 0, gid: 0, groups: [0], home: home, shell: "/bin/sh")
    }

    /// Starts `/bin/sh -c command` as root inside, in its own session; stdin is /dev/null,
    /// stdout and stderr go to jaild's log. Daemons it starts are reparented to init.
    func spawnAsRoot(_ command: String, output: FileDescriptor) throws(RootCommandError) -> pid_t {
        let root = Self.rootAccount()
        let devNull: FileDescriptor
        do { devNull = try openFile("/dev/null", O_RDONLY) } catch { throw .system(error) }
        defer { devNull.closeQuietly() }
        // A daemon that writes a lot must not stall the start while the supervisor, waiting
        // for readiness, does not read its output yet.
        do { try output.setPipeCapacity(Self.outputPipeSize) } catch {
            log.warning("\(error): a command of root's that writes much may wait until the supervisor reads")
        }
        let hello = Hello(mode: .stdio(passed: []), login: false, arguments: ["-c", command], environment: [])
        let request = SpawnRequest(command: SessionCommand(account: root, hello: hello, terminal: nil), account: root,
                                   stdio: [devNull.rawValue, output.rawValue, output.rawValue], controllingTerminal: false)
        do {
            return try Self.withoutLoginUID { () throws(SpawnError) in try spawnProgram(request) }
        } catch {
            throw .spawn(error)
        }
    }

    static let outputPipeSize: Int32 = 1 << 20

    static let unsetLoginUID = "4294967295"

    /// Runs `body` (a spawn) with init's login uid unset, so the program starts as a system
    /// service does under systemd: with no login uid, which sshd's and cron's pam_loginuid
    /// then set to each login's user. jaild started from a login session carries its admin's
    /// login uid, which root inside (no CAP_AUDIT_CONTROL) cannot replace: Debian's sshd,
    /// whose pam_loginuid is "required", would refuse every login. init's own is put back.
    /// In a user namespace both writes fail and nothing changes: pam_loginuid ignores the
    /// login uid there.
    static func withoutLoginUID<T>(_ body: () throws(SpawnError) -> T) throws(SpawnError) -> T {
        let path = "/proc/self/loginuid"
        let current = ((try? readText(path)) ?? unsetLoginUID)[...].trimmingWhitespace()
        guard current != unsetLoginUID else { return try body() }
        let written = writeLoginUID(unsetLoginUID)
        defer { if written { _ = writeLoginUID(String(current)) } }
        return try body()
    }

    /// False when the kernel refused: expected in a user namespace (see above), where the
    /// login uid stays as it was and nothing depends on it.
    static func writeLoginUID(_ value: String) -> Bool {
        do {
            try writeKernelFile("/proc/self/loginuid", value)
            return true
        } catch {
            return false
        }
    }

    /// Runs `--rc` and waits for it (at most `--rc-timeout` seconds) before init reports
    /// ready, so that `jaild … && ssh …` finds the services up. Returns its exit code (137
    /// when killed at the timeout), nil without an rc. A failing rc is logged and the jail
    /// runs on; with `--rc-required` it throws, and the start is undone.
    mutating func runStartRC(output: FileDescriptor) throws(JailError) -> Int32? {
        guard let command = configuration.rc else { return nil }
        let started = monotonicMilliseconds()
        let pid: pid_t
        do {
            pid = try spawnAsRoot(command, output: output)
        } catch {
            log.error("rc did not start: \(error)")
            if configuration.rcRequired { throw .startFailed("rc did not start: \(error) (--rc-required)") }
            return 127
        }
        log.info("rc started (pid \(pid) in the jail)")
        let deadline = started + Int64(configuration.rcTimeout) * 1000
        var code: Int32?
        var timedOut = false
        while code == nil {
            // Orphans of the rc (a daemon's first fork) are init's to reap as well.
            while let child = reapChild() {
                if child.pid == pid { code = child.code }
            }
            if code != nil { break }
            let remaining = deadline - monotonicMilliseconds()
            if remaining <= 0 {
                killChild(pid)
                // Our child, killed: it is there to reap (137 in the one case it would not be).
                code = waitForChild(pid).map(exitCode(ofStatus:)) ?? 128 + SIGKILL
                timedOut = true
                break
            }
            // Only a pause until a signal or the deadline: each turn reaps and checks the
            // time itself, so a failed wait (it cannot fail but for a bug) costs one turn.
            _ = try? signals.fd.waitReadable(milliseconds: Int32(min(remaining, 60_000)))
            for received in (try? signals.receive()) ?? [] where received.signal != SIGCHLD && received.killedFromOutside {
                stopPending = true
            }
        }
        let status = code ?? 127
        let took = "after \(monotonicMilliseconds() - started) ms"
        // The event as a record for log tooling (issue 35), then the sentence operators know.
        log.info("\(Logfmt.line("rc exit", [("jail", jailName), ("status", "\(status)"), ("timed_out", timedOut ? "yes" : "no"), ("ms", "\(monotonicMilliseconds() - started)")]))")
        if timedOut {
            log.error("rc did not finish within \(configuration.rcTimeout) s: killed (status \(status))")
        } else if status == 0 {
            log.info("rc exited with status 0 \(took)")
        } else {
            log.error("rc exited with status \(status) \(took)")
        }
        if status != 0 && configuration.rcRequired {
            throw .startFailed(timedOut ? "rc did not finish within \(configuration.rcTimeout) s (--rc-required)"
                : "rc exited with status \(status) (--rc-required)")
        }
        return status
    }
}

/// Why one of root's own commands (`--rc`, `--rc-stop`) did not start.
enum RootCommandError: Error, CustomStringConvertible {
    case system(SystemError)
    case spawn(SpawnError)

    var description: String {
        switch self {
        case .system(let error): "\(error)"
        case .spawn(let error): "\(error)"
        }
    }
}
