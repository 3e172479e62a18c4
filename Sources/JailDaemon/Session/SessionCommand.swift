import JailProtocol

/// What a session executes: the program, its argv and its environment, built from the
/// account and the client's hello. Pure, so it is unit-tested.
public struct SessionCommand: Equatable, Sendable {
    public var path: String
    public var arguments: [String]
    public var environment: [String]

    /// - Parameter terminal: the session's pty inside the jail, if any (SSH_TTY names it).
    /// - Parameter policy: which of the client's variables may cross into the jail; everything
    ///   else stays outside.
    public init(account: Account, hello: Hello, terminal: String?, policy: EnvironmentPolicy = EnvironmentPolicy()) {
        let shellName = account.shell.split(separator: "/").last.map(String.init) ?? account.shell
        path = account.shell
        arguments = [hello.login ? "-" + shellName : shellName] + hello.arguments

        var environment = [
            "HOME=\(account.home)",
            "USER=\(account.name)",
            "LOGNAME=\(account.name)",
            "SHELL=\(account.shell)",
            "PATH=" + (account.uid == 0 ? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                : "/usr/local/bin:/usr/bin:/bin"),
        ]
        var seen = Set<Substring>()
        for pair in hello.environment {
            guard let equals = pair.firstIndex(of: "=") else { continue }
            let name = pair[..<equals]
            guard policy.accepts(name), !seen.contains(name) else { continue }
            seen.insert(name)
            if name == "SSH_TTY" {
                // The host's tty means nothing inside; the session's own pty does.
                if let terminal { environment.append("SSH_TTY=\(terminal)") }
                continue
            }
            environment.append(pair)
        }
        self.environment = environment
    }
}
