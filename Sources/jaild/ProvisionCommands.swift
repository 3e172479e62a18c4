import ArgumentParser
import JailDaemon
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// `jaild create NAME --uid UID --base BASE [jaild option…]`: create passes any further start
/// option into the jail's config file, checked by the start's own parser first.
struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a jail: its root from a base, its host account, its /etc/jail/NAME.conf (docs/provisioning.md).",
        discussion: "Any further start option (--memory 1G, --ports tcp:25, …) is written into NAME.conf.")

    @Argument(help: ArgumentHelp("The jail's name: /etc/jail/NAME.conf, the host account NAME.", valueName: "name"))
    var name: String

    @Option(help: ArgumentHelp("The jail user's uid (and the host account's); required.", valueName: "uid"))
    var uid: UInt32?

    @Option(help: ArgumentHelp("The jail user's gid (default: UID).", valueName: "gid"))
    var gid: UInt32?

    @Option(help: ArgumentHelp("The base the root is made from (`jaild base list`); required.", valueName: "base"))
    var base: String?

    @Option(help: ArgumentHelp("The jail user's name inside.", valueName: "user"))
    var user = "work"

    @Option(help: ArgumentHelp("An ssh public key file for the account's authorized keys.", valueName: "file"))
    var key: String?

    @Option(help: ArgumentHelp("The user's shell inside.", valueName: "path"))
    var shell: String?

    @Flag(help: "Copy the base instead of an overlay over it.")
    var copy = false

    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Start options for NAME.conf.", valueName: "jaild option"))
    var startOptions: [String] = []

    /// Keys create writes on its own; options that are also create's own are parsed above.
    static let reservedKeys: Set<String> = ["uid", "gid", "name", "root", "base", "shell"]
    static let shortOptions: [Character: String] = ["a": "socket-prefix", "m": "mount", "c": "foreground"]

    func validate() throws {
        if name.hasPrefix("-") { throw ValidationError("create: NAME comes first, not '\(name)'") }
        // Checked here rather than by ArgumentParser, to say it as create always did.
        if uid == nil { throw ValidationError("create: --uid UID is required (a number)") }
        if base == nil { throw ValidationError("create: --base BASE is required") }
    }

    func run() throws {
        let options: [(key: String, value: String)]
        do { options = try Self.configOptions(startOptions) } catch {
            // A usage error found after parsing: one line and exit 2, as ArgumentParser's own.
            JailLogHandler.emitToTerminal(error.message)
            throw ExitCode(2)
        }
        guard let uid, let base else { throw ExitCode(2) }  // validate() said so
        var request = JailCreation(name: name, uid: uid, base: base, jailBinary: ProvisionCommands.jailBinary())
        request.gid = gid
        request.user = user
        request.keyFile = key
        request.shell = shell
        request.copy = copy
        request.options = options
        do {
            print(try Provision.create(request, paths: .fromEnvironment()))
        } catch {
            JailLogHandler.emitToTerminal("create \(name): \(error)")
            throw ExitCode(1)
        }
    }

    /// The start options as config lines, each checked as jaild would check it from the
    /// config, so a bad one is refused here, before anything exists.
    static func configOptions(_ arguments: [String]) throws(ValidationError) -> [(key: String, value: String)] {
        var options: [(key: String, value: String)] = []
        var i = 0
        while i < arguments.count {
            var argument = arguments[i]
            i += 1
            var inline: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                inline = String(argument[argument.index(after: equals)...])
                argument = String(argument[..<equals])
            }
            let key: String
            if argument.hasPrefix("--") {
                key = String(argument.dropFirst(2))
            } else if argument.count == 2, argument.hasPrefix("-"), let long = shortOptions[argument.last!] {
                key = long
            } else {
                throw ValidationError("create: unexpected argument '\(argument)'")
            }
            guard let takesValue = ConfigFile.keys[key], !reservedKeys.contains(key) else {
                throw ValidationError("create: option --\(key) is not one create takes or writes into the config")
            }
            var value = "yes"
            if takesValue {
                if let inline { value = inline } else {
                    guard i < arguments.count else { throw ValidationError("create: --\(key) needs a value") }
                    value = arguments[i]
                    i += 1
                }
                guard !value.isEmpty, !value.contains("\n") else { throw ValidationError("create: --\(key) needs a value") }
            }
            let pair = takesValue ? ["--\(key)", value] : ["--\(key)"]
            if let problem = StartCommand.problem(with: pair) { throw ValidationError("create: \(problem)") }
            options.append((key, value))
        }
        return options
    }
}

struct DestroyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "destroy", abstract: "Destroy a stopped jail: its files, its host account, its config (--yes).")

    @Argument(help: ArgumentHelp("The jail's name.", valueName: "name"))
    var name: String

    @Flag(help: "Yes, remove its files and its host account.")
    var yes = false

    @Flag(help: "Keep the jail's own files (its home directories and upper layer) under the kept-data directory.")
    var keepData = false

    func validate() throws {
        guard yes else { throw ValidationError("destroy \(name) removes its files and its host account: add --yes") }
    }

    func run() throws {
        do {
            print(try Provision.destroy(name: name, keepData: keepData, paths: .fromEnvironment()))
        } catch {
            JailLogHandler.emitToTerminal("destroy \(name): \(error)")
            throw ExitCode(1)
        }
    }
}

struct BaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "base", abstract: "The bases jails are created from.", subcommands: [BaseListCommand.self])
}

struct BaseListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the bases: name, path, size.")

    func run() throws {
        print(Provision.baseTable(Provision.bases(paths: .fromEnvironment())), terminator: "")
    }
}

enum ProvisionCommands {
    /// The `jail` client beside this jaild (or in ../bin of an sbin): the host account's login shell.
    static func jailBinary() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return "/usr/local/bin/jail" }
        let path = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/") else { return "/usr/local/bin/jail" }
        let directory = String(path[..<slash])
        // jaild in an sbin directory (/usr/local/sbin), jail in the bin beside it.
        if access(directory + "/jail", X_OK) != 0 && directory.hasSuffix("/sbin") {
            return String(directory.dropLast(4)) + "bin/jail"
        }
        return directory + "/jail"
    }
}
