import JailProtocol

/// What a session executes: the program, its argv and its environment, built from the
/// account and the client's hello. Pure, so it is unit-tested. argv and the environment are
/// byte strings end to end: what the client had is what execve gets.
public struct SessionCommand: Equatable, Sendable {
    public var path: String
    public var argumentBytes: [[UInt8]]
    public var environmentBytes: [[UInt8]]

    /// For tests and display (invalid UTF-8 as U+FFFD).
    public var arguments: [String] { argumentBytes.map { String(decoding: $0, as: UTF8.self) } }
    public var environment: [String] { environmentBytes.map { String(decoding: $0, as: UTF8.self) } }

    /// - Parameter terminal: the session's pty inside the jail, if any (SSH_TTY names it).
    /// - Parameter policy: which of the client's variables may cross into the jail; everything
    ///   else stays outside.
    /// - Parameter extra: NAME=VALUE pairs the helper sets itself (forwarding), after the rest.
    public init(account: Account, hello: Hello, terminal: String?, policy: EnvironmentPolicy = EnvironmentPolicy(),
                extra: [String] = []) {
        let shellName = account.shell.split(separator: "/").last.map(String.init) ?? account.shell
        path = account.shell
        argumentBytes = [Array((hello.login ? "-" + shellName : shellName).utf8)] + hello.argumentBytes

        var environment = [
            "HOME=\(account.home)",
            "USER=\(account.name)",
            "LOGNAME=\(account.name)",
            "SHELL=\(account.shell)",
            "PATH=" + (account.uid == 0 ? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                : "/usr/local/bin:/usr/bin:/bin"),
        ].map { Array($0.utf8) }
        var seen = Set<String>()
        for pair in hello.environmentBytes {
            guard let equals = pair.firstIndex(of: UInt8(ascii: "=")) else { continue }
            // A name is matched as text; one that is not valid UTF-8 matches no pattern.
            let nameBytes = pair[..<equals]
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard name.utf8.elementsEqual(nameBytes), policy.accepts(name), !seen.contains(name) else { continue }
            seen.insert(name)
            if name == "SSH_TTY" {
                // The host's tty means nothing inside; the session's own pty does.
                if let terminal { environment.append(Array("SSH_TTY=\(terminal)".utf8)) }
                continue
            }
            environment.append(pair)
        }
        environment += extra.map { Array($0.utf8) }
        environmentBytes = environment
    }
}
