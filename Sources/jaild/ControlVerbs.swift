import ArgumentParser
import JailDaemon
import JailSystem
import SystemPackage

/// The JAIL every verb names a jail by, resolved by `Control.lookup`.
struct JailArgument: ParsableArguments {
    @Argument(help: ArgumentHelp("The jail: its name, socket, pid file or UID:GID.", valueName: "jail"))
    var jail: String
}

/// The verbs that read and stop running jails (Sources/JailDaemon/Control). Each JAIL goes
/// through the one resolver, `Control.lookup`.
struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the running jails: name, socket, uid:gid, root, init, sessions, memory, ports …")

    @Flag(help: "One JSON array of objects instead of the table.")
    var json = false

    func run() throws { try exitUnlessZero(Control.list(json: json)) }
}

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show every property of one running jail (`key: value` lines, or --json).")

    @OptionGroup var target: JailArgument
    var jail: String { target.jail }

    @Flag(help: "One JSON object instead of `key: value` lines.")
    var json = false

    func run() throws { try exitUnlessZero(Control.show(jail, json: json)) }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Say whether a jail runs: exit 0 running, 3 not running, 4 no such jail.")

    @OptionGroup var target: JailArgument
    var jail: String { target.jail }

    func run() throws { try exitUnlessZero(Control.status(jail)) }
}

struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Stop a jail: SIGTERM, SIGKILL after its --stop-timeout; returns when it is gone.")

    @OptionGroup var target: JailArgument
    var jail: String { target.jail }

    func run() throws { try exitUnlessZero(Control.stop(jail)) }
}

struct SessionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions", abstract: "List the sessions of every running jail or of one, or end one with --kill.")

    @Argument(help: ArgumentHelp("Only this jail's sessions: its name, socket, pid file or UID:GID.", valueName: "jail"))
    var jail: String?

    @Flag(help: "One JSON array of objects instead of the table.")
    var json = false

    @Option(help: ArgumentHelp("End the session with this ID (SIGHUP, then SIGKILL); needs JAIL.", valueName: "id"))
    var kill: Int?

    func validate() throws {
        if kill != nil && jail == nil { throw ValidationError("--kill ID needs the JAIL the session is in") }
    }

    func run() throws {
        if let kill, let jail { return try exitUnlessZero(Sessions.kill(jail, id: kill)) }
        try exitUnlessZero(Sessions.list(jail, json: json))
    }
}

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics", abstract: "Print every running jail's figures in Prometheus' text format (docs/metrics.md).")

    @Option(help: ArgumentHelp("Write them to FILE (atomically, for node_exporter's textfile collector).", valueName: "file"))
    var output: String?

    func validate() throws {
        if output == "" { throw ValidationError("--output needs a file") }
    }

    func run() throws { try exitUnlessZero(Metrics.run(output: output)) }
}

/// `jaild authorized-keys USER`, sshd's AuthorizedKeysCommand (docs/ssh.md): the keys on
/// stdout, what was left out and why on stderr. No running jail means no keys (exit 0): the
/// login could not reach the jail anyway; a file that cannot be read is a failure (exit 1).
struct AuthorizedKeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authorized-keys", abstract: "Print a host account's keys from its jail (sshd's AuthorizedKeysCommand).")

    @Argument(help: ArgumentHelp("The host account sshd asks for.", valueName: "user"))
    var user: String

    func run() throws { try exitUnlessZero(Self.authorizedKeys(user: user)) }

    static func authorizedKeys(user: String) -> Int32 {
        do {
            let (keys, skipped) = try Control.authorizedKeys(hostUser: user)
            for reason in skipped { JailLogHandler.emitToTerminal("authorized-keys \(Logfmt.printable(user)): \(reason)") }
            do { try FileDescriptor(rawValue: 1).writeFully(Array(keys.utf8)) } catch {
                JailLogHandler.emitToTerminal("authorized-keys: \(error)")
                return 1
            }
            return 0
        } catch {
            JailLogHandler.emitToTerminal("authorized-keys: \(error)")
            switch error {
            case .noRunningJail, .noJailUser: return 0
            default: return 1
            }
        }
    }
}
