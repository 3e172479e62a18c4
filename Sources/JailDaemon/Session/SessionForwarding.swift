import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What a session brings along from its ssh login and the helper sets up inside the jail:
/// with --forward-x11, the client's X11 cookie in a per-session Xauthority file (the user's,
/// 0600, in a private directory of /tmp), and DISPLAY and XAUTHORITY pointing at it. The
/// client cannot set those variables itself (EnvironmentPolicy forbids them): only what the
/// helper made is trusted. Everything is removed at the session's end.
///
/// With --forward-agent (the default) and a client that has SSH_AUTH_SOCK, a listening socket
/// `/tmp/jail-agent-XXXXXX/agent.sock` (directory 0700 and socket 0600, the user's) and
/// SSH_AUTH_SOCK naming it; the relay carries each connection to the client (AgentChannels).
struct SessionForwarding {
    var directories: [PrivateDirectory] = []
    var agentListener: FileDescriptor?

    /// Sets up what `hello` asks for and the jail allows; returns the NAME=VALUE pairs for
    /// the session. A failure costs the forwarding, not the session (logged).
    mutating func prepare(hello: Hello, account: Account, configuration: JailConfiguration) -> [String] {
        var environment: [String] = []
        if configuration.forwardX11, let cookie = hello.x11, let number = cookie.displayNumber {
            do {
                var directory = try PrivateDirectory(kind: "x11")
                directories.append(directory)
                let entry = Xauthority.Entry(family: Xauthority.familyLocal, address: Self.hostname(), number: number,
                                             name: cookie.protocolName, data: cookie.data)
                try directory.createFile("Xauthority", contents: Xauthority.encode([entry]), owner: account)
                directories[directories.count - 1] = directory
                try directory.handOver(to: account)
                environment += ["DISPLAY=\(cookie.display)", "XAUTHORITY=\(directory.path)/Xauthority"]
            } catch {
                log.warning("session: no X11 forwarding: \(error)")
            }
        }
        if configuration.forwardAgent && hello.offersAgent {
            do {
                var directory = try PrivateDirectory(kind: "agent")
                directories.append(directory)
                let listener = try directory.listen("agent.sock", owner: account)
                directories[directories.count - 1] = directory
                agentListener = listener
                try directory.handOver(to: account)
                environment.append("SSH_AUTH_SOCK=\(directory.path)/agent.sock")
            } catch {
                agentListener?.closeQuietly()
                agentListener = nil
                log.warning("session: no agent forwarding: \(error)")
            }
        }
        return environment
    }

    func remove() {
        for directory in directories { directory.remove() }
    }

    /// The jail's own hostname (its UTS namespace): what X clients inside look up.
    static func hostname() -> [UInt8] {
        // gethostname(2) of one's own namespace fails only for a bad buffer: an empty name
        // then makes the cookie match no display, as before.
        do { return Array(try JailSystem.hostName().utf8) } catch { return [] }
    }
}
