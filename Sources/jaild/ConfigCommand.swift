import ArgumentParser
import JailDaemon
import JailSystem
import SystemPackage

/// `jaild config NAME|FILE`: a config file's entries as jaild reads them, for people and for
/// programs that must not parse the format again (the Ansible module reads through it).
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Print a config file's entries as jaild reads them: `key = value` in order, or --json.",
        discussion: """
            Comments, blank lines and the spaces around keys and values are gone; repeated keys stay, in order. \
            An unknown key or a line without `=` fails with the file and line (exit 1). The text form shows \
            control characters escaped; --json carries every value exactly (docs/config.md).
            """)

    @Argument(help: ArgumentHelp("NAME of /etc/jail/NAME.conf, a file (a path with a /), or - for standard input.",
                                 valueName: "name-or-file"))
    var config: String

    @Flag(help: "One JSON array of {\"line\", \"key\", \"value\"} objects instead of `key = value` lines.")
    var json = false

    @Flag(help: "Also check every value as `jaild start` would, and fail with the line of the first bad one.")
    var check = false

    func validate() throws {
        if config.isEmpty || (!config.contains("/") && config != "-" && config.hasPrefix(".")) {
            throw ValidationError("'\(config)' is neither a jail's name nor a file (a path with a /)")
        }
    }

    /// The file `config` names: a path as it is, a NAME in the config directory.
    var path: String {
        config == "-" || config.contains("/") ? config : "\(ConfigExpansion.configDirectory)/\(config).conf"
    }

    func run() throws { try exitUnlessZero(Self.print(path: path, json: json, check: check)) }

    static func print(path: String, json: Bool, check: Bool) -> Int32 {
        let shown = path == "-" ? "standard input" : path
        let entries: [ConfigFile.Entry]
        do {
            entries = try ConfigFile.parse(try ConfigExpansion.configText(path), path: shown)
            if check { _ = try ConfigExpansion.startOptions(entries, path: shown) }
        } catch let error as SystemError {
            JailLogHandler.emitToTerminal("cannot read config \(shown): \(error.errno)")
            return 1
        } catch {
            JailLogHandler.emitToTerminal("\(error)")
            return 1
        }
        let text = json ? Self.json(entries) : entries.map { "\($0.key) = \(Logfmt.printable($0.value))\n" }.joined()
        do { try FileDescriptor(rawValue: 1).writeFully(Array(text.utf8)) } catch {
            JailLogHandler.emitToTerminal("config: \(error)")
            return 1
        }
        return 0
    }

    static func json(_ entries: [ConfigFile.Entry]) -> String {
        let objects = entries.map { "{\"line\":\($0.line),\"key\":\(Logfmt.json($0.key)),\"value\":\(Logfmt.json($0.value))}" }
        return "[" + objects.joined(separator: ",") + "]\n"
    }
}
