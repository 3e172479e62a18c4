/// The messages of the Jail wire protocol (docs/protocol.md). Pure data: no I/O.
public enum Message: Equatable, Sendable {
    /// Client → server, first frame: who I am and what I want to run.
    case hello(Hello)
    /// Bytes of one stream: 0 stdin (client → server), 1 stdout and 2 stderr (server → client).
    case data(stream: UInt8, bytes: [UInt8])
    /// Client → server: the end of stdin for a relayed stdin.
    case endOfInput
    /// Server → client, last frame: the program's exit code (128+N for death by signal N).
    case exit(code: Int32)
    /// Server → client, last frame: the session could not start; one line for the user.
    case error(String)
    /// Server → client: a program in the jail connected to the session's agent socket; the
    /// client connects `channel` to its SSH_AUTH_SOCK (or closes it at once).
    case agentOpen(channel: UInt32)
    /// Either way: bytes of one agent connection.
    case agentData(channel: UInt32, bytes: [UInt8])
    /// Either way: that agent connection ended.
    case agentClose(channel: UInt32)
    /// Server → client, terminal mode, once: the jail pty's master travels with this frame
    /// (SCM_RIGHTS). The client relays between its terminal and the master itself; the
    /// session helper has left the data path.
    case terminal

    public var type: FrameType {
        switch self {
        case .hello: .hello
        case .data: .data
        case .endOfInput: .endOfInput
        case .exit: .exit
        case .error: .error
        case .agentOpen: .agentOpen
        case .agentData: .agentData
        case .agentClose: .agentClose
        case .terminal: .terminal
        }
    }
}

public enum FrameType: UInt8, Sendable {
    case hello = 1
    case data = 2
    case endOfInput = 3
    // 4 was `windowSize` until version 2: the client now resizes the pty master itself.
    case exit = 5
    case error = 6
    case agentOpen = 7
    case agentData = 8
    case agentClose = 9
    case terminal = 10
}

public struct WindowSize: Equatable, Sendable {
    public var rows: UInt16
    public var columns: UInt16
    public init(rows: UInt16, columns: UInt16) {
        self.rows = rows
        self.columns = columns
    }
}

/// The client's terminal settings, field by field (never a C struct on the wire).
public struct TerminalModes: Equatable, Sendable {
    public var inputFlags: UInt32
    public var outputFlags: UInt32
    public var controlFlags: UInt32
    public var localFlags: UInt32
    public var controlCharacters: [UInt8]
    public var inputSpeed: UInt32
    public var outputSpeed: UInt32

    public init(
        inputFlags: UInt32, outputFlags: UInt32, controlFlags: UInt32, localFlags: UInt32,
        controlCharacters: [UInt8], inputSpeed: UInt32, outputSpeed: UInt32
    ) {
        self.inputFlags = inputFlags
        self.outputFlags = outputFlags
        self.controlFlags = controlFlags
        self.localFlags = localFlags
        self.controlCharacters = controlCharacters
        self.inputSpeed = inputSpeed
        self.outputSpeed = outputSpeed
    }
}

public struct Hello: Equatable, Sendable {
    public enum Mode: Equatable, Sendable {
        /// A pty inside the jail, whose master the server passes to the client (`terminal`);
        /// the client's terminal is in raw mode.
        case terminal(TerminalModes, WindowSize)
        /// Exact byte streams. `passed` says which of fds 0, 1, 2 travel with this frame as
        /// SCM_RIGHTS (in that order); `null` which the session opens on the jail's own
        /// /dev/null; the others are relayed as data frames. `stderrJoinsStdout`: the client's
        /// relayed stderr is its stdout (`2>&1`), so the program gets one pipe for both and
        /// their order is kept.
        case stdio(passed: StdioSet, null: StdioSet = [], stderrJoinsStdout: Bool = false)
    }

    public var version: UInt16
    public var mode: Mode
    /// Start the shell as a login shell (the client was started as one, or with no arguments).
    public var login: Bool
    /// The arguments for the jail user's shell, without argv[0], as the bytes they were: a
    /// file name need not be UTF-8 (scp and rsync pass remote paths in argv).
    public var argumentBytes: [[UInt8]]
    /// NAME=VALUE pairs the client offers, as bytes; the server keeps only the ones it allows.
    public var environmentBytes: [[UInt8]]
    /// Run as root inside the jail instead of the jail's user (`jaild enter --root`). The
    /// server honours it only when the peer is uid 0 on the host; for anyone else it refuses.
    public var root: Bool
    /// The X11 cookie of the client's DISPLAY (sshd's `ssh -X`), for jails with --forward-x11.
    public var x11: X11Cookie?
    /// The client has an ssh agent (SSH_AUTH_SOCK) it will connect agent channels to.
    public var offersAgent: Bool

    public init(version: UInt16 = Protocol.version, mode: Mode, login: Bool, argumentBytes: [[UInt8]],
                environmentBytes: [[UInt8]], root: Bool = false, x11: X11Cookie? = nil, offersAgent: Bool = false) {
        self.offersAgent = offersAgent
        self.version = version
        self.mode = mode
        self.login = login
        self.argumentBytes = argumentBytes
        self.environmentBytes = environmentBytes
        self.root = root
        self.x11 = x11
    }

    public init(version: UInt16 = Protocol.version, mode: Mode, login: Bool, arguments: [String], environment: [String],
                root: Bool = false, x11: X11Cookie? = nil, offersAgent: Bool = false) {
        self.init(version: version, mode: mode, login: login, argumentBytes: arguments.map { Array($0.utf8) },
                  environmentBytes: environment.map { Array($0.utf8) }, root: root, x11: x11, offersAgent: offersAgent)
    }

    /// For display and logs only (invalid UTF-8 shown as U+FFFD): never for execve.
    public var arguments: [String] { argumentBytes.map { String(decoding: $0, as: UTF8.self) } }
    public var environment: [String] { environmentBytes.map { String(decoding: $0, as: UTF8.self) } }

    /// The hello's flags byte: bit 0 login, bit 1 root, bit 2 an X11 cookie follows the mode.
    /// Version 1 clients sent 0 or 1 here.
    public static let loginFlag: UInt8 = 1
    public static let rootFlag: UInt8 = 2
    public static let x11Flag: UInt8 = 4
    /// Bit 3: the client offers its ssh agent.
    public static let agentFlag: UInt8 = 8
    public static let knownFlags: UInt8 = loginFlag | rootFlag | x11Flag | agentFlag
}

/// What an X client needs to reach the client's display: the DISPLAY value and the
/// Xauthority entry for it (its protocol name, MIT-MAGIC-COOKIE-1, and the secret).
public struct X11Cookie: Equatable, Sendable {
    public var display: String
    public var protocolName: String
    public var data: [UInt8]

    public init(display: String, protocolName: String, data: [UInt8]) {
        self.display = display
        self.protocolName = protocolName
        self.data = data
    }

    /// The display number of DISPLAY (`localhost:10.0` → `10`), nil if it has none.
    public var displayNumber: String? {
        guard let colon = display.lastIndex(of: ":") else { return nil }
        let rest = display[display.index(after: colon)...]
        let number = rest.prefix { $0 != "." }
        guard !number.isEmpty, number.allSatisfy({ ("0"..."9").contains($0) }) else { return nil }
        return String(number)
    }
}

public struct StdioSet: OptionSet, Equatable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let input = StdioSet(rawValue: 1)
    public static let output = StdioSet(rawValue: 2)
    public static let error = StdioSet(rawValue: 4)
    public static let all: StdioSet = [.input, .output, .error]

    public func contains(stream: Int) -> Bool { rawValue & (1 << UInt8(stream)) != 0 }
    public var count: Int { rawValue.nonzeroBitCount }
}

public enum Protocol {
    public static let magic: [UInt8] = Array("JAIL".utf8)
    /// 3: terminal mode passes the pty master to the client (`terminal` frame); the
    /// client sends no `data` or `windowSize` frames in it any more.
    public static let version: UInt16 = 3
}
