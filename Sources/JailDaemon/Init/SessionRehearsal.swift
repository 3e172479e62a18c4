import JailIO
import JailProtocol
import JailSystem
import SystemPackage

/// Runs the pure part of a session's set-up once in init, before the first helper is forked,
/// on sample data of its own: init still never reads a byte from a client.
///
/// The Swift runtime fills its caches (generic type metadata, protocol conformances) the
/// first time a process needs them, and a helper is a fresh fork of init: whatever init never
/// did, every helper did again — decoding the hello, building the command — and the lookups
/// scan conformance tables across megabytes of jaild's binary. That was a fifth of a
/// helper's work. Done once here, the caches are inherited by every helper.
enum SessionRehearsal {
    static func run(configuration: JailConfiguration) {
        let modes = TerminalModes(inputFlags: 0, outputFlags: 0, controlFlags: 0, localFlags: 0,
                                  controlCharacters: [UInt8](repeating: 0, count: 32), inputSpeed: 0, outputSpeed: 0)
        let hellos = [
            Hello(mode: .stdio(passed: .all), login: false, arguments: ["-c", "true"],
                  environment: ["TERM=dumb", "LANG=C", "LC_ALL=C", "SSH_TTY=/dev/pts/0", "OTHER=1"]),
            Hello(mode: .terminal(modes, WindowSize(rows: 24, columns: 80)), login: true, arguments: [],
                  environment: ["TERM=dumb"]),
        ]
        var channel = FrameChannel(socket: FileDescriptor(rawValue: -1))
        for hello in hellos {
            channel.absorb(FrameEncoder.encode(.hello(hello)))
            channel.absorb(FrameEncoder.encode(.data(stream: 0, bytes: [0])))
            channel.absorb(FrameEncoder.encode(.windowSize(WindowSize(rows: 24, columns: 80))))
            channel.absorb(FrameEncoder.encode(.endOfInput))
        }
        let messages = (try? channel.decodeBuffered()) ?? []
        channel.send(.data(stream: 1, bytes: [0]))
        channel.send(.exit(code: 0))
        channel.send(.error("rehearsal"))

        guard let (account, _) = try? Session.resolveAccount(configuration) else { return }
        for case .hello(let hello) in messages {
            let command = SessionCommand(account: account, hello: hello, terminal: "/dev/pts/0")
            let argv = CStringArray(command.argumentBytes)
            let envp = CStringArray(command.environmentBytes)
            argv.free()
            envp.free()
            // The session record's lines, formatted and dropped (nothing is logged).
            let record = SessionRecord(jail: "rehearsal", id: 1, account: account, peer: PeerCredentials(pid: 1, uid: 0, gid: 0),
                                       hello: hello, tty: nil)
            _ = Logfmt.line("session start", record.startFields + [("started", "\(record.startedWall)")])
        }
    }
}
