import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `/run/jail/info.json`: the jail's own facts, for programs inside (which services it has and
/// where, its limits, its ports), written by init at start into the jail's fresh /run, root
/// inside's, mode 0444. Format version 1 (docs/services.md); fields are only ever added.
///
/// Root inside owns that /run (a tmpfs of the jail's own) and may replace the file: nothing of
/// the host ever reads it back, so a forged copy misleads only the jail's own programs. The
/// host's truth stays in the state file and `jaild list --json`. HOSTPATHs are not in it: the
/// host's paths are never shown inside.
enum JailInfo {
    static let version = 1
    static let path = "/run/jail/info.json"

    static func render(configuration: JailConfiguration, account: Account, startedAt: Int) -> String {
        let q = Logfmt.json
        let limits = configuration.limits
        let services = configuration.services.map {
            "{\"path\": \(q($0.jailPath)), \"header\": \(q($0.header.rawValue)), \"max\": \($0.maxConnections)}"
        }
        let fields: [(String, String)] = [
            ("version", "\(version)"),
            ("name", q(configuration.name(account: account))),
            ("hostname", configuration.hostname.map(q) ?? "null"),
            ("user", q(account.name)),
            ("uid", "\(account.uid)"),
            ("gid", "\(account.gid)"),
            ("limits", "{\"memory\": \(limits.memory.map { "\($0)" } ?? "null"), \"pids\": \(limits.pids.map { "\($0)" } ?? "null"), "
                + "\"cpus\": \(limits.cpus.map { "\($0)" } ?? "null"), "
                + "\"disk\": \(configuration.disk.map { "\($0.bytes)" } ?? "null"), "
                + "\"disk_inodes\": \(configuration.disk?.inodes.map { "\($0)" } ?? "null")}"),
            ("ports", configuration.ports.map { q($0.description) } ?? "null"),
            ("started", "\(startedAt)"),
            ("jaild_version", q(configuration.jaildVersion)),
            ("services", "[" + services.joined(separator: ", ") + "]"),
        ]
        return "{\n" + fields.map { "  \(q($0.0)): \($0.1)" }.joined(separator: ",\n") + "\n}\n"
    }

    /// After pivot_root, as root inside, before any program runs (so nobody raced for the path).
    static func write(configuration: JailConfiguration, account: Account) throws(JailError) {
        let text = render(configuration: configuration, account: account, startedAt: Int(wallClockSeconds()))
        try JailError.wrap { () throws(SystemError) in
            try ensureDirectory("/run/jail", mode: 0o755)
            // Exclusive: the fresh /run has no such file, and one found there was not ours.
            guard try writeFile(path, text: text, mode: 0o444, .exclusive) else {
                throw SystemError("open", path: path, errno: .fileExists)
            }
        }
    }
}
