import ArgumentParser
import JailDaemon

#if canImport(Glibc)
import Glibc
#endif

/// jaild: the root command. Its verbs are subcommands; `start` is the default, so the 2014
/// form `jaild -u UID -r ROOT …` is `jaild start -u UID -r ROOT …`.
@main
struct Jaild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jaild",
        abstract: "Start, list, stop and enter jails: containers that a host account's sessions enter through `jail`.",
        discussion: """
            Without a verb, jaild starts a jail: `jaild -u UID -r ROOT ...` is `jaild start -u UID -r ROOT ...`. \
            A JAIL given to a verb is its name (NAME of /etc/jail/NAME.conf, or the --jail-name of a running jail), \
            its socket, its pid file, or UID:GID.
            Exit codes: 0 success, 1 failure, 2 usage error; `jaild status`: 0 running, 3 not running, \
            4 no such jail (LSB). Man pages: jaild(8), jail.conf(5), jail(1).
            """,
        subcommands: [StartCommand.self, ListCommand.self, ShowCommand.self, StatusCommand.self, StopCommand.self,
                      SessionsCommand.self, EnterCommand.self, CreateCommand.self, DestroyCommand.self, BaseCommand.self,
                      AuthorizedKeysCommand.self, MetricsCommand.self, ConfigCommand.self],
        defaultSubcommand: StartCommand.self,
        helpNames: [.short, .long])

    /// The verbs that never start a jail: they run from jaild's file as it is (a start
    /// re-executes itself from a read-only mount first, `ProtectedBinary`), and so does help.
    /// An array: a Set's first use costs a start the Swift runtime's type lookups for it.
    static let nonStarting: [String] = ["list", "show", "status", "stop", "sessions", "enter", "create", "destroy", "base",
                                           "authorized-keys", "metrics", "config", "help", "-v", "--version", "-h", "--help",
                                           "--generate-completion-script", "--experimental-dump-help"]

    /// Whether these arguments may start (or adopt) a jail: the 2014 form and `start`.
    static func mayStartAJail(_ arguments: [String]) -> Bool {
        guard let first = arguments.first else { return true }
        return !nonStarting.contains(first)
    }

    static func main() {
        let arguments = argumentsAfterTheProgram()
        let mayStart = mayStartAJail(arguments)
        if mayStart { InheritedDescriptors.closeAll() }
        // Before anything else: the fewer of jaild's pages are mapped, the cheaper the remap.
        if mayStart { ProtectedBinary.remapIfNeeded() }
        LoggingBootstrap.run()
        // Before the arguments are parsed: parsing is the costliest part of jaild's own start (about
        // 1.1 ms of the Swift runtime's type lookups, measured), and a new image would parse them again.
        if mayStart { ProtectedBinary.reexecIfNeeded() }
        if let code = runUnparsed(arguments) {
            if code != 0 { Glibc.exit(code) }
            return
        }
        let expanded = mayStart ? ConfigExpansion.startArguments(arguments, checked: false) : arguments
        do {
            if let options = readStartDirectly(expanded, mayStart: mayStart) {
                try options.run()
                return
            }
            var command: ParsableCommand
            do { command = try parseStart(expanded, mayStart: mayStart) } catch {
                // A config's bad value is said with its file and line (the checked expansion
                // exits there); a config without one leaves the parse's own error.
                if mayStart { _ = ConfigExpansion.startArguments(arguments, checked: true) }
                throw error
            }
            try command.run()
        } catch {
            exitReportingUsageAsTwo(error)
        }
    }

    /// argv[1...] read from the C array: CommandLine.arguments builds its array through an
    /// unspecialized map, 0.05 ms of the Swift runtime's type lookups in each start.
    static func argumentsAfterTheProgram() -> [String] {
        var arguments: [String] = []
        arguments.reserveCapacity(Int(CommandLine.argc))
        for index in 1..<max(Int(CommandLine.argc), 1) {
            if let argument = CommandLine.unsafeArgv[index] { arguments.append(String(cString: argument)) }
        }
        return arguments
    }

    /// `jaild list`, `jaild list --json` and `jaild metrics` as the whole command line, run
    /// without ArgumentParser: its parse from the root is 1.5 of the 2.2 ms of CPU such a call
    /// costs on no jails (perf, Swift runtime type lookups), for verbs monitoring runs every few
    /// seconds. Any other form (help, another option) is parsed as before; nil: not one of these.
    static func runUnparsed(_ arguments: [String]) -> Int32? {
        switch arguments {
        case ["list"]: Control.list(json: false)
        case ["list", "--json"]: Control.list(json: true)
        case ["metrics"]: Metrics.run(output: nil)
        default: nil
        }
    }

    /// The 2014 form (`jaild -u UID …`, no verb) parsed by `StartCommand` alone: parsing from
    /// the root first reflects every verb's options (swift-argument-parser builds the whole
    /// command tree), about 0.35 ms of CPU of each start on the 2-core test VM (perf stat,
    /// 40 runs: 2.97 ms task-clock to an early preflight failure, 2.62 ms this way). An error
    /// parses again from the root, so its message names `jaild start` as before; help and the
    /// other flags that print and exit go to the root parse at once.
    /// `jaild start …` (what `jaild start NAME` becomes) is parsed the same way, without its verb.
    static func parseStart(_ arguments: [String], mayStart: Bool) throws -> ParsableCommand {
        guard mayStart, let first = arguments.first, first.hasPrefix("-") || first == "start",
              !arguments.dropFirst(first == "start" ? 1 : 0).contains(where: nonStarting.contains) else {
            return try parseAsRoot(arguments)
        }
        do {
            return try StartCommand.parseAsRoot(Array(arguments.dropFirst(first == "start" ? 1 : 0)))
        } catch {
            return try parseAsRoot(arguments)
        }
    }

    /// A start's plain command line read by StartArguments, not ArgumentParser (a quarter of
    /// a start's time went to the latter); nil for anything else, which parseStart parses.
    static func readStartDirectly(_ arguments: [String], mayStart: Bool) -> StartOptions? {
        guard mayStart, let first = arguments.first, first.hasPrefix("-") || first == "start" else { return nil }
        return StartArguments.parse(Array(arguments.dropFirst(first == "start" ? 1 : 0)))
    }

    /// ArgumentParser's usage errors exit 64 (EX_USAGE); jaild's exit 2 as its own usage
    /// errors always did, and as getopt programs do, in one line as every error of jaild (the
    /// verb's --help has the rest). Help and other codes pass through.
    static func exitReportingUsageAsTwo(_ error: Error) -> Never {
        guard exitCode(for: error).rawValue == ExitCode.validationFailure.rawValue else { exit(withError: error) }
        JailLogHandler.emitToTerminal(UsageMessage.oneLine(fullMessage(for: error)))
        Glibc.exit(2)
    }
}

/// ArgumentParser words an option value's error as "The value 'V' is invalid for '--opt <v>':
/// REASON"; jaild's parsers already name the option and the value in REASON, so that is the line.
enum UsageMessage {
    static func plain(_ message: String) -> String {
        var lines = message.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let first = lines.first else { return message }
        let prefix = first.hasPrefix("Error: ") ? "Error: " : ""
        let line = first.dropFirst(prefix.count)
        guard line.hasPrefix("The value '"), let invalid = line.firstRange(of: "' is invalid for '"),
              let reason = line[invalid.upperBound...].firstRange(of: "': ") else { return message }
        lines[0] = prefix + line[reason.upperBound...]
        return lines.joined(separator: "\n")
    }

    /// "REASON (see 'jaild VERB --help')" from ArgumentParser's Error/Help/Usage/See lines.
    static func oneLine(_ message: String) -> String {
        let lines = plain(message).split(separator: "\n").map(String.init)
        guard var reason = lines.first else { return message }
        if reason.hasPrefix("Error: ") { reason.removeFirst("Error: ".count) }
        guard let see = lines.last(where: { $0.contains("See '") }), let open = see.firstIndex(of: "'"),
              let close = see[see.index(after: open)...].firstIndex(of: "'") else { return reason }
        return "\(reason) (see '\(see[see.index(after: open)..<close])')"
    }
}

/// A verb's result as its exit status: 0 returns, anything else exits with it.
func exitUnlessZero(_ code: Int32) throws {
    if code != 0 { throw ExitCode(code) }
}
