/// A jail defined once: `/etc/jail/NAME.conf` or `jaild --config FILE`. One `key = value` per
/// line; a line whose first non-blank character is `#` (or `;`) is a comment, as in systemd's
/// unit files, so a `#` inside a value (`boot = echo a#b`, a URL's fragment) is the value's;
/// every key is a long option of jaild, repeatable options may repeat; flags on the command
/// line come after the file, so they win. See docs/config.md.
public struct ConfigFile {
    public struct Entry: Equatable, Sendable {
        public let line: Int
        public let key: String
        public let value: String
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let path: String
        public let line: Int
        public let reason: String
        public var description: String { "\(path):\(line): \(reason)" }
    }

    /// Keys and whether they take a value (`foreground` is a yes/no switch).
    public static let keys: [String: Bool] = [
        "uid": true, "gid": true, "name": true, "root": true, "shell": true, "mount": true, "hostname": true,
        "socket-prefix": true, "stop-timeout": true, "max-sessions": true, "handshake-timeout": true,
        "boot": true, "boot-restart": true, "cap": true, "memory": true, "pids": true, "cpus": true, "rlimit": true, "ports": true,
        "ports-exclusive": false, "address": true, "address-shared": false, "loopback": true, "loopback-pool": true,
        "allow-host-loopback": false, "foreground": false, "accept-env": true, "allow-aio": false,
        "rc": true, "rc-stop": true, "rc-timeout": true, "rc-required": false,
        "base": true, "runlevel": true, "init": true, "init-timeout": true, "init-required": false,
        "disk": true, "disk-inodes": true, "disk-backend": true,
        "jail-name": true, "syslog": false, "syslog-target": true,
        "views": true, "lxcfs-directory": true, "cpuset": true, "shm-size": true,
        "service": true,
        "forward-x11": false, "forward-agent": false,
        "no-userns": false, "userns-pool": true,
    ]

    /// Switches that are on unless turned off.
    public static let defaultOn: Set<String> = ["forward-agent", "syslog"]

    public static func parse(_ text: String, path: String) throws(ParseError) -> [Entry] {
        var entries: [Entry] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let content = raw.trimmingWhitespace()
            if content.isEmpty || content.hasPrefix("#") || content.hasPrefix(";") { continue }
            guard let equals = content.firstIndex(of: "=") else {
                throw ParseError(path: path, line: index + 1, reason: "expected 'key = value', got '\(content)'")
            }
            let key = String(content[..<equals].trimmingWhitespace())
            let value = String(content[content.index(after: equals)...].trimmingWhitespace())
            guard keys[key] != nil else {
                throw ParseError(path: path, line: index + 1,
                                 reason: "unknown key '\(key)' (known: \(keys.keys.sorted().joined(separator: ", ")))")
            }
            guard !value.isEmpty else { throw ParseError(path: path, line: index + 1, reason: "'\(key)' has no value") }
            entries.append(Entry(line: index + 1, key: key, value: value))
        }
        return entries
    }

    /// The command-line arguments an entry stands for.
    public static func arguments(for entry: Entry, path: String) throws(ParseError) -> [String] {
        if keys[entry.key] == true { return ["--\(entry.key)", entry.value] }
        switch entry.value.lowercased() {
        case "yes", "true", "1", "on": return ["--\(entry.key)"]
        // A switch that is on by default says so with --no-KEY.
        case "no", "false", "0", "off": return defaultOn.contains(entry.key) ? ["--no-\(entry.key)"] : []
        default: throw ParseError(path: path, line: entry.line, reason: "'\(entry.key)' is yes or no, not '\(entry.value)'")
        }
    }
}
