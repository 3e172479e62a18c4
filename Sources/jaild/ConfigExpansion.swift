import ArgumentParser
import JailDaemon
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A start's config file becomes arguments before the command line is parsed: `jaild start
/// NAME …` reads /etc/jail/NAME.conf and names the jail NAME; `--config FILE` reads FILE. The
/// file's options come first, so the command line's win (and repeatable ones add up).
enum ConfigExpansion {
    static var configDirectory: String { ProvisionPaths.fromEnvironment().configDirectory }

    /// With `checked: false` a config's values are not parsed one by one first: the start's
    /// own parse sees them all, and only when it fails is the expansion done again, checked,
    /// to name the line (Jaild.main). Each parse costs a start about 0.3 ms.
    static func startArguments(_ arguments: [String], checked: Bool = true) -> [String] {
        guard arguments.first == "start" else { return expandConfig(arguments, checked: checked) }
        var rest = Array(arguments.dropFirst())
        if let name = rest.first, !name.hasPrefix("-") {
            guard !name.contains("/"), !name.hasPrefix(".") else {
                fail("start: '\(name)' is not a jail's name (NAME of \(configDirectory)/NAME.conf)", code: 2)
            }
            rest = ["--config", "\(configDirectory)/\(name).conf", "--jail-name", name] + rest.dropFirst()
        }
        return ["start"] + expandConfig(rest, checked: checked)
    }

    /// `--config FILE` becomes the file's options, placed first so the command line wins.
    static func expandConfig(_ arguments: [String], checked: Bool = true) -> [String] {
        var others: [String] = []
        var path: String?
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--config", i + 1 < arguments.count {
                path = arguments[i + 1]
                i += 2
                continue
            }
            if a.hasPrefix("--config=") { path = String(a.dropFirst(9)) } else { others.append(a) }
            i += 1
        }
        guard let path else { return arguments }
        let text: String
        do { text = try configText(path) } catch { fail("cannot read config \(path): \(error.errno)") }
        do {
            return try startOptions(ConfigFile.parse(text, path: path), path: path, checked: checked) + others
        } catch {
            fail(error.description)
        }
    }

    /// The text of config file `path`; "-" is standard input (`jaild config -`).
    static func configText(_ path: String) throws(SystemError) -> String {
        let bytes = path == "-" ? try readAll(FileDescriptor(rawValue: 0)) : try readFile(path)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The start options a config's entries stand for, each value checked by the start's own
    /// parser: a bad one is reported with its line.
    static func startOptions(_ entries: [ConfigFile.Entry], path: String, checked: Bool = true) throws(ConfigFile.ParseError) -> [String] {
        var fromFile: [String] = []
        var pairs: [(entry: ConfigFile.Entry, pair: [String])] = []
        for entry in entries {
            let pair = try ConfigFile.arguments(for: entry, path: path)
            pairs.append((entry, pair))
            fromFile += pair
        }
        // All values checked in one parse (each parse costs about 0.3 ms of a start); only
        // when that fails is each checked alone, so a bad one is reported with its line.
        guard checked else { return fromFile }
        let hasUID = pairs.contains { $0.entry.key == "uid" }
        if StartCommand.problem(with: fromFile, needsUID: !hasUID) != nil {
            for (entry, pair) in pairs {
                if let message = StartCommand.problem(with: pair, needsUID: entry.key != "uid") {
                    throw ConfigFile.ParseError(path: path, line: entry.line, reason: message)
                }
            }
        }
        return fromFile
    }

    static func fail(_ message: String, code: Int32 = 1) -> Never {
        JailLogHandler.emitToTerminal(message)
        exit(code)
    }
}

extension StartCommand {
    /// What is wrong with these start options alone, in one line; nil if nothing. A config
    /// file's line and `jaild create`'s options are checked this way, by the start's own parser.
    /// They are checked as options of a jail with a root (a later --root of their own wins):
    /// `create` writes the root, and a config's root may be on another line, so an option that
    /// needs one (--init, --service) is judged on its own value.
    static func problem(with options: [String], needsUID: Bool = true) -> String? {
        do {
            _ = try parse((needsUID ? ["--uid", "1"] : []) + ["--root", "/"] + options)
            return nil
        } catch {
            let message = UsageMessage.plain(Jaild.message(for: error))
            return message.split(separator: "\n").first.map(String.init) ?? message
        }
    }
}
