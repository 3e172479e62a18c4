import ArgumentParser
import JailDaemon
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// `jaild list|stop|status|start …` beside the 2014 form `jaild -u UID …`, which stays the
/// default. Returns the arguments for the starting command, or exits.
enum ControlCommands {
    static let configDirectory = "/etc/jail"

    static func dispatch(_ arguments: [String]) -> [String] {
        guard let first = arguments.first else { return arguments }
        let rest = Array(arguments.dropFirst())
        switch first {
        case "list":
            guard rest.allSatisfy({ $0 == "--json" }) else { fail("usage: jaild list [--json]", code: 2) }
            exit(Control.list(json: rest.contains("--json")))
        case "status", "stop":
            guard rest.count == 1 else { fail("usage: jaild \(first) SOCKET|PIDFILE|UID:GID", code: 2) }
            exit(first == "stop" ? Control.stop(rest[0]) : Control.status(rest[0]))
        case "start":
            guard let name = rest.first, !name.contains("/"), !name.hasPrefix(".") else {
                fail("usage: jaild start NAME (reads \(configDirectory)/NAME.conf)", code: 2)
            }
            return expandConfig(["--config", "\(configDirectory)/\(name).conf"] + rest.dropFirst())
        default:
            return expandConfig(arguments)
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
            for entry in try ConfigFile.parse(String(decoding: bytes, as: UTF8.self), path: path) {
                let pair = try ConfigFile.arguments(for: entry, path: path)
                // Each value is checked alone, so a bad one is reported with its line.
                let probe = (entry.key == "uid" ? [] : ["--uid", "1"]) + pair
                do { _ = try JailDaemonCommand.parse(probe) } catch {
                    let message = JailDaemonCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
                    fail("\(path):\(entry.line): \(message)")
                }
                fromFile += pair
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
