/// `--cap NAME`: capabilities a jail's programs get as ambient capabilities, so a daemon that
/// runs as the jail user binds port 25 without being root. Only this allow-list: each one is
/// useful to a service and none reaches past the jail (see docs/security.md).
public enum Capability {
    public static let allowed: [String: Int] = [
        "CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7,
        "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "IPC_LOCK": 14, "SYS_CHROOT": 18, "SYS_NICE": 23,
        "AUDIT_WRITE": 29,
    ]

    public static let netBindService = 10

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let name: String
        public var description: String {
            "capability '\(name)' is not allowed (allowed: \(Capability.allowed.keys.sorted().joined(separator: ", ")))"
        }
    }

    /// The capability number for `NET_BIND_SERVICE`, `cap_net_bind_service`, …
    public static func parse(_ name: String) throws(ParseError) -> Int {
        var key = name.uppercased()
        if key.hasPrefix("CAP_") { key.removeFirst(4) }
        guard let number = allowed[key] else { throw ParseError(name: name) }
        return number
    }

    public static func mask(_ numbers: [Int]) -> UInt64 {
        numbers.reduce(0) { $0 | (1 << UInt64($1)) }
    }
}
