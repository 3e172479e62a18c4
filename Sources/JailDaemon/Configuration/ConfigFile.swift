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

        public init(path: String, line: Int, reason: String) {
            self.path = path
            self.line = line
            self.reason = reason
        }
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

    /// The entries of a jail's config: `entries` whose every key is a long option of jaild.
    public static func parse(_ text: String, path: String) throws(ParseError) -> [Entry] {
        let entries = try entries(text, path: path)
        if let unknown = entries.first(where: { keys[$0.key] == nil }) {
            throw ParseError(path: path, line: unknown.line,
                             reason: "unknown key '\(unknown.key)' (known: \(keys.keys.sorted().joined(separator: ", ")))")
        }
        return entries
    }

    /// The `key = value` lines of text in this format, in order, whatever their keys: the one
    /// reader of jail configs and of the record `jaild destroy --keep-data` leaves (KeptData).
    /// A line ends at LF or CRLF (a file written on Windows reads the same); the value is the
    /// rest of the line after the first `=`, quotes and all.
    public static func entries(_ text: String, path: String) throws(ParseError) -> [Entry] {
        var entries: [Entry] = []
        // "\r\n" is one Character in Swift: splitting on "\n" alone would not end a CRLF line.
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (index, raw) in lines.enumerated() {
            let content = raw.trimmingWhitespace()
            if content.isEmpty || content.hasPrefix("#") || content.hasPrefix(";") { continue }
            guard let equals = content.firstIndex(of: "=") else {
                throw ParseError(path: path, line: index + 1, reason: "expected 'key = value', got '\(content)'")
            }
            let key = String(content[..<equals].trimmingWhitespace())
            let value = String(content[content.index(after: equals)...].trimmingWhitespace())
            guard !key.isEmpty else { throw ParseError(path: path, line: index + 1, reason: "'= \(value)' has no key") }
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
