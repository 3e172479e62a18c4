import JailSystem
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The one message a starting process sends the one waiting for it (init to the supervisor,
/// the daemon to the jaild command): "R" when ready (with a short note: init adds the exit
/// status of `--rc`), "E" and a one-line reason when it failed. The pipe closing without
/// either means the sender died.
public enum Readiness: Equatable, Sendable {
    case ready(String)
    case failed(String)

    public var encoded: [UInt8] {
        switch self {
        case .ready(let note): Array(("R" + note).utf8)
        case .failed(let reason): Array(("E" + reason).utf8)
        }
    }

    public static func decode(_ bytes: [UInt8]) -> Readiness? {
        switch bytes.first {
        case UInt8(ascii: "R"): .ready(String(decoding: bytes.dropFirst(), as: UTF8.self))
        case UInt8(ascii: "E"): .failed(String(decoding: bytes.dropFirst(), as: UTF8.self))
        default: nil
        }
    }

    /// Sends it; a reader that is gone already has its answer (the sender's exit).
    public func send(on fd: FileDescriptor) {
        try? fd.writeFully(encoded)
    }

    /// Waits for the message: "R…" comes in one write (atomic on a pipe) and is complete (the
    /// sender goes on), "E…" ends with the pipe. nil when the pipe closed with nothing said.
    /// Closes `fd`.
    public static func receive(from fd: FileDescriptor) -> Readiness? {
        var message: [UInt8] = []
        while let chunk = try? fd.readChunk(max: 4096), !chunk.isEmpty {
            message += chunk
            if message.first == UInt8(ascii: "R") { break }
        }
        fd.closeQuietly()
        return decode(message)
    }
}

/// The supervisor's two words to a starting init on the lifeline pipe (init holds its read
/// end for its whole life; EOF means the supervisor is gone). Each is one byte.
enum LifelineWord: UInt8, Sendable {
    /// init's user namespace has its ids (and the root tree its mapping): it may mount.
    case go = 0x47  // "G"
    /// init is in its cgroups and the port filter is attached: it may fork. With a cgroup
    /// namespace (Init/CgroupView.swift): init is in the jail's cgroup `jail/NAME`, where it
    /// makes the namespace and answers `CgroupNamespaceMade` on the ready pipe.
    case cgroupsJoined = 0x43  // "C"
    /// After `CgroupNamespaceMade`: init is in `init.scope` and the limits are set: it may fork.
    case limitsSet = 0x4C  // "L"

    /// Says it. EPIPE means init has already failed, whose reason is on `ready`; the
    /// supervisor reads it there (Supervisor.tell).
    func send(on lifeline: FileDescriptor) throws(SystemError) {
        try lifeline.writeFully([rawValue])
    }

    /// Waits for `self`: anything else, or EOF, is the end of the start (false).
    func await(on lifeline: FileDescriptor) -> Bool {
        // The pipe is blocking: nil is an EINTR, read again. EOF or an error ends the start.
        while true {
            do {
                guard let byte = try lifeline.readChunk(max: 1) else { continue }
                return byte == [rawValue]
            } catch { return false }
        }
    }
}

/// init's one byte on the ready pipe before its readiness, when the jail has a cgroup
/// namespace: made, rooted at `jail/NAME` ("N"). Anything else there is `Readiness` ("E…").
enum CgroupNamespaceMade {
    static let byte: UInt8 = 0x4E  // "N"
}

/// The level of a line init and its helpers write to the supervisor's log pipe: one letter
/// before the text (the supervisor then logs it at that level through its own sink).
enum PipeLogLevel: Character, Sendable {
    case error = "e"
    case warning = "w"
    case info = "i"

    init(_ level: Logger.Level) {
        self = level >= .error ? .error : level == .warning ? .warning : .info
    }

    var level: Logger.Level {
        switch self {
        case .error: .error
        case .warning: .warning
        case .info: .info
        }
    }

    /// The level a pipe line was sent with, and its text (a line without a letter is info).
    static func parse(_ line: Substring) -> (Logger.Level, String) {
        guard let first = line.first, let letter = PipeLogLevel(rawValue: first) else { return (.info, String(line)) }
        return (letter.level, String(line.dropFirst()))
    }
}
