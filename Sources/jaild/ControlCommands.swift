import ArgumentParser
import JailDaemon
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `jaild list|stop|status|start …` beside the 2014 form `jaild -u UID …`, which stays the
/// default. Returns the arguments for the starting command, or exits.
enum ControlCommands {
    static var configDirectory: String { ProvisionPaths.fromEnvironment().configDirectory }

    /// The commands that never start a jail: they run from jaild's file as it is (a start
    /// re-executes itself from a read-only mount first, `ProtectedBinary`).
    static let nonStarting: Set<String> = ["list", "show", "status", "stop", "sessions", "enter", "create", "destroy", "base",
                                           "authorized-keys", "metrics", "-v", "--version", "-h", "--help"]

    /// Whether these arguments may start (or adopt) a jail: the 2014 form and `start NAME`.
    static func mayStartAJail(_ arguments: [String]) -> Bool {
        guard let first = arguments.first else { return true }
        return !nonStarting.contains(first)
    }

    static func dispatch(_ arguments: [String]) -> [String] {
        guard let first = arguments.first else { return arguments }
        let rest = Array(arguments.dropFirst())
        switch first {
        case "list":
            guard rest.allSatisfy({ $0 == "--json" }) else { fail("usage: jaild list [--json]", code: 2) }
            exit(Control.list(json: rest.contains("--json")))
        case "show":
            let names = rest.filter { $0 != "--json" }
            guard names.count == 1, !names[0].hasPrefix("-") else { fail("usage: jaild show NAME|SOCKET|PIDFILE|UID:GID [--json]", code: 2) }
            exit(Control.show(names[0], json: rest.contains("--json")))
        case "status", "stop":
            guard rest.count == 1 else { fail("usage: jaild \(first) NAME|SOCKET|PIDFILE|UID:GID", code: 2) }
            exit(first == "stop" ? Control.stop(rest[0]) : Control.status(rest[0]))
        case "sessions":
            exit(sessions(rest))
        case "enter":
            Enter.run(rest)
        case "start":
            guard let name = rest.first, !name.contains("/"), !name.hasPrefix(".") else {
                fail("usage: jaild start NAME (reads \(configDirectory)/NAME.conf)", code: 2)
            }
            return expandConfig(["--config", "\(configDirectory)/\(name).conf", "--jail-name", name] + rest.dropFirst())
        case "metrics":
            let usage = "usage: jaild metrics [--output FILE]"
            switch rest.count {
            case 0: exit(Metrics.run(output: nil))
            case 2 where rest[0] == "--output" && !rest[1].isEmpty: exit(Metrics.run(output: rest[1]))
            default: fail(usage, code: 2)
            }
        case "create": exit(ProvisionCommands.create(rest))
        case "destroy": exit(ProvisionCommands.destroy(rest))
        case "base": exit(ProvisionCommands.base(rest))
        case "authorized-keys":
            guard rest.count == 1, !rest[0].hasPrefix("-") else { fail("usage: jaild authorized-keys USER", code: 2) }
            exit(authorizedKeys(user: rest[0]))
        default:
            return expandConfig(arguments)
        }
    }

    /// `jaild sessions [JAIL] [--json]`, `jaild sessions JAIL --kill ID`.
    static func sessions(_ arguments: [String]) -> Int32 {
        let usage = "usage: jaild sessions [JAIL] [--json] | jaild sessions JAIL --kill ID"
        var json = false
        var kill: Int?
        var spec: String?
        var i = 0
        while i < arguments.count {
            switch arguments[i] {
            case "--json": json = true
            case "--kill":
                guard i + 1 < arguments.count, let id = Int(arguments[i + 1]) else { fail(usage, code: 2) }
                kill = id
                i += 1
            case let a where spec == nil && !a.hasPrefix("-"): spec = a
            default: fail(usage, code: 2)
            }
            i += 1
        }
        if let kill {
            guard let spec else { fail(usage, code: 2) }
            return Sessions.kill(spec, id: kill)
        }
        return Sessions.list(spec, json: json)
    }

    /// `jaild authorized-keys USER`, sshd's AuthorizedKeysCommand (docs/ssh.md): the keys on
    /// stdout, what was left out and why on stderr. No running jail means no keys (exit 0): the
    /// login could not reach the jail anyway; a file that cannot be read is a failure (exit 1).
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

    /// `--config FILE` becomes the file's options, placed first so the command line wins.
    static func expandConfig(_ arguments: [String]) -> [String] {
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
        let bytes: [UInt8]
        do { bytes = try readFile(path) } catch { fail("cannot read config \(path): \(error.errno)") }
        do {
            var fromFile: [String] = []
            var pairs: [(entry: ConfigFile.Entry, pair: [String])] = []
            for entry in try ConfigFile.parse(String(decoding: bytes, as: UTF8.self), path: path) {
                let pair = try ConfigFile.arguments(for: entry, path: path)
                pairs.append((entry, pair))
                fromFile += pair
            }
            // All values checked in one parse (each parse costs about 0.3 ms of a start); only
            // when that fails is each checked alone, so a bad one is reported with its line.
            let hasUID = pairs.contains { $0.entry.key == "uid" }
            if (try? JailDaemonCommand.parse((hasUID ? [] : ["--uid", "1"]) + fromFile)) == nil {
                for (entry, pair) in pairs {
                    let probe = (entry.key == "uid" ? [] : ["--uid", "1"]) + pair
                    do { _ = try JailDaemonCommand.parse(probe) } catch {
                        let message = JailDaemonCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
                        fail("\(path):\(entry.line): \(message)")
                    }
                }
            }
            return fromFile + others
        } catch {
            fail(error.description)
        }
    }


    static func fail(_ message: String, code: Int32 = 1) -> Never {
        JailLogHandler.emitToTerminal(message)
        exit(code)
    }
}
