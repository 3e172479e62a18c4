/// Which of the client's environment variables a session receives — the idea of sshd's
/// AcceptEnv: names, or prefixes written `NAME*`. One definition for both sides: the client
/// offers what the policy could accept, the session helper accepts what its policy names.
public struct EnvironmentPolicy: Sendable, Equatable {
    /// Accepted by every jail: the terminal, the locale, the time zone, git's protocol
    /// version (git hosts set `AcceptEnv GIT_PROTOCOL`), and what sshd says about the login.
    public static let defaultPatterns = [
        "TERM", "COLORTERM", "LANG", "LC_*", "TZ", "GIT_PROTOCOL", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY",
    ]
    /// Never accepted, whatever a pattern says: the dynamic loader's variables would run host-
    /// chosen code in every program, and the others are the session's own (the helper sets
    /// them from the jail's passwd, or for forwarding), so a client must not choose them.
    public static let forbiddenPatterns = [
        "LD_*", "PATH", "HOME", "SHELL", "USER", "LOGNAME", "MAIL", "SSH_AUTH_SOCK", "DISPLAY", "XAUTHORITY",
        "JAIL_*", "SOCKET",
    ]

    public private(set) var patterns: [String]

    /// The default patterns plus the operator's (`--accept-env`), which `validate` checked.
    public init(extra: [String] = []) {
        patterns = Self.defaultPatterns + extra.filter { !Self.defaultPatterns.contains($0) }
    }

    public func accepts<S: StringProtocol>(_ name: S) -> Bool {
        !Self.isForbidden(name) && patterns.contains { Self.matches(name, $0) }
    }

    /// What the client sends: everything any policy could accept. The helper filters again.
    public static func isOffered<S: StringProtocol>(_ name: S) -> Bool {
        !name.isEmpty && !isForbidden(name)
    }

    public static func isForbidden<S: StringProtocol>(_ name: S) -> Bool {
        forbiddenPatterns.contains { matches(name, $0) }
    }

    /// Why an `--accept-env` pattern is refused, or nil when it is fine.
    public static func problem(with pattern: String) -> String? {
        let name = pattern.hasSuffix("*") ? String(pattern.dropLast()) : pattern
        if name.contains("*") { return "accept-env '\(pattern)': '*' may only end a prefix (NAME or PREFIX*)" }
        if name.isEmpty && pattern != "*" { return "accept-env: empty name" }
        let allowed = name.unicodeScalars.allSatisfy { $0 == "_" || ($0.value < 128 && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
        if !allowed { return "accept-env '\(pattern)': a name holds only letters, digits and '_'" }
        if !pattern.hasSuffix("*") && isForbidden(name) {
            return "accept-env '\(pattern)': \(name) is never taken from the client (the session sets it, or it loads code)"
        }
        return nil
    }

    static func matches<S: StringProtocol>(_ name: S, _ pattern: String) -> Bool {
        if pattern.hasSuffix("*") { return name.hasPrefix(pattern.dropLast()) }
        return name == pattern
    }
}
