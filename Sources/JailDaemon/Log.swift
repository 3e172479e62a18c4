import CJail
import JailSystem
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where jaild's log lines go. Set once per process role before the first line.
public enum LogSink: Sendable {
    /// `jaild: message` on stderr (foreground).
    case standardError
    /// syslog(3), daemon facility (daemonized).
    case syslog
    /// Inside the jail: one line per message on fd 2, which is a pipe to the supervisor,
    /// prefixed with a level letter so the supervisor can log it at the same level.
    case supervisorPipe
    /// Daemonized on a host without syslog: a file of its own (Supervisor/LogFile.swift).
    case file(LogFile)
}

/// Whether stderr is systemd's journal (sd-daemon(3): `JOURNAL_STREAM` names stderr's device
/// and inode): then each line of the `.standardError` sink starts with its syslog priority,
/// `<3>` error, `<4>` warning, `<6>` info, so `journalctl -p warning` finds jaild's errors.
/// Decided once at bootstrap; a global for the reason below.
nonisolated(unsafe) public var standardErrorIsJournal = false

/// The process role picks the sink; a global because swift-log handlers are made by a factory
/// that cannot be re-bootstrapped, and jaild is single-threaded.
nonisolated(unsafe) public var currentLogSink = LogSink.standardError

public struct JailLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]

    public init() {}

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        Self.emit(level: event.level, "\(event.message)")
    }

    /// Every line of every sink goes through the one escaper (Logfmt.printable): a message may
    /// quote a jail's path, a user name from its passwd, a line of its output, and none of it
    /// may split the line or reach a terminal as a control (C0, C1, bidi).
    public static func emit(level: Logger.Level, _ rawText: String) {
        let text = Logfmt.printable(rawText)
        switch currentLogSink {
        case .standardError:
            let prefix = level >= .error ? "jaild: error: " : level == .warning ? "jaild: warning: " : "jaild: "
            writeLine(journalPriority(level) + prefix + text)
        case .syslog:
            let priority: Int32 = level >= .error ? LOG_ERR : level == .warning ? LOG_WARNING : LOG_INFO
            cj_syslog(priority, text)
        case .supervisorPipe:
            writeLine(String(PipeLogLevel(level).rawValue) + text)
        case .file(let file):
            file.append(level: level >= .error ? "error: " : level == .warning ? "warning: " : "", text)
        }
    }

    /// sd-daemon's `<N>` prefix of a level when stderr is the journal, else nothing.
    static func journalPriority(_ level: Logger.Level) -> String {
        guard standardErrorIsJournal else { return "" }
        return level >= .error ? "<3>" : level == .warning ? "<4>" : "<6>"
    }

    /// Whether `JOURNAL_STREAM` ("DEV:INO") names the file on fd 2.
    public static func journalStream(_ value: String?, isOnDescriptor fd: Int32) -> Bool {
        guard let parts = value?.split(separator: ":"), parts.count == 2,
              let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        // A stderr that cannot be looked at is not the journal: plain lines, as on a terminal.
        guard let info = try? FileDescriptor(rawValue: fd).fileStatus() else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    static func writeLine(_ line: String) {
        // One write(2), as a line on a pipe must be (whole, never interleaved); stderr gone (a
        // closed terminal) leaves nowhere to say that it is, so the line is dropped.
        _ = try? FileDescriptor.standardError.writeSome((Array(line.utf8) + [10])[...])
    }

    /// The level a pipe line was sent with, and its text.
    public static func parsePipeLine(_ line: Substring) -> (Logger.Level, String) {
        PipeLogLevel.parse(line)
    }
}

let log = Logger(label: "jaild", factory: { _ in JailLogHandler() })

extension JailLogHandler {
    /// A failure of jaild's first process: always one line on its stderr.
    public static func emitToTerminal(_ text: String) {
        writeLine(journalPriority(text.hasPrefix("warning: ") ? .warning : .error) + "jaild: " + Logfmt.printable(text))
    }
}

public enum LoggingBootstrap {
    public static func run() {
        standardErrorIsJournal = JailLogHandler.journalStream(environmentValue("JOURNAL_STREAM"), isOnDescriptor: 2)
        LoggingSystem.bootstrap { _ in JailLogHandler() }
    }
}
