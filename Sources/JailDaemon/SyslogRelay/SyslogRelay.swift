import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The syslog relay: "jaild: syslog relay", a child of init that serves the jail's /dev/log
/// (`--syslog`) and forwards each message to the host's, rewritten by SyslogMessage so the
/// host files it under `jail/NAME`.
///
/// Why a process of its own: it reads bytes any program in the jail sends, and init never
/// reads such bytes (if PID 1 dies the jail dies). A crash here costs the jail its syslog,
/// nothing more (init logs it). How it reaches a host path from inside: init connects a
/// datagram socket to the host's target *before* pivot_root (`connectTarget`), and only this
/// process keeps it (init until it forks the relay, SyslogRelay+Init.swift; close-on-exec,
/// never in a session helper or a program); a connected datagram socket needs no path to send,
/// so nothing of the host's file system is reachable through it. Sends never block
/// (MSG_DONTWAIT): a busy host daemon costs messages, counted, not a stuck relay. Rate limit
/// (SyslogBudget): at most 1,000 messages and 256 KiB each second; the excess is counted and
/// reported in one message once per second.
///
/// Without a host syslog (nothing listens on the target at start), the relay still serves the
/// jail's /dev/log, so no message is lost without a word: each one, rewritten and rate-limited
/// the same way, goes as a log line to init's log pipe (its stderr), which the supervisor
/// writes to its own log: the jail's file under /var/log/jail when the host has no syslog.
struct SyslogRelay {
    let inside: FileDescriptor
    /// The host's syslog socket; nil: the supervisor's log (stderr, init's log pipe).
    let target: FileDescriptor?
    let jail: String
    var budget = SyslogBudget()

    /// Before pivot_root: a socket connected to the host's syslog socket, or nil when nobody
    /// listens there (no such socket, or refused): then the relay writes to the jail's log.
    static func connectTarget(_ path: String) throws(JailError) -> FileDescriptor? {
        do { return try UnixSocket.connectDatagram(path: path) } catch {
            if [.noSuchFileOrDirectory, .connectionRefused, .notDirectory].contains(error.errno) {
                log.info("nobody listens on \(path) (\(error.errno)): the jail's /dev/log goes to jaild's log")
                return nil
            }
            throw JailError.failed("--syslog: cannot connect to \(path)", error)
        }
    }

    /// The jail's /dev/log, bound, and the host's socket: what init holds until the relay runs
    /// (SyslogRelay+Init.swift). init never reads either.
    struct Endpoint {
        let inside: FileDescriptor
        let target: FileDescriptor?
        let jail: String

        /// In init once the relay has them, and in every other child of init's: neither socket
        /// is theirs (a session helper must never hold the host's).
        func close() {
            inside.closeQuietly()
            target?.closeQuietly()
        }
    }

    /// After pivot_root and hardening: binds the jail's /dev/log (mode 0666, every program may
    /// log). Datagrams sent to it wait in its queue until the relay reads them.
    static func bind(target: FileDescriptor?, jail: String) throws(JailError) -> Endpoint {
        let path = "/dev/log"
        let inside: FileDescriptor
        do {
            try removeFile(path)
            inside = try withFileCreationMask(0) { () throws(SystemError) in try UnixSocket.bindDatagram(path: path) }
        } catch {
            target?.closeQuietly()
            throw JailError.failed("--syslog: cannot bind \(path) in the jail", error)
        }
        // Every program may log: a /dev/log of another mode would refuse all but root's lines.
        do { try setMode(path, 0o666) } catch {
            inside.closeQuietly()
            target?.closeQuietly()
            throw JailError.failed("--syslog: cannot open \(path) in the jail to every user", error)
        }
        return Endpoint(inside: inside, target: target, jail: jail)
    }

    /// Forks the relay for `endpoint`. Returns its pid; init keeps no descriptor of either
    /// socket, whether the fork worked or not.
    static func start(_ endpoint: Endpoint) throws(JailError) -> pid_t {
        // As before a spare's fork (Init+Spare.swift): else the relay would keep the data pages
        // init only read, mapped, for as long as it runs (its own pagemap is not readable to it).
        releaseDataFilePages()
        let pid: pid_t
        do { pid = try forkProcess() } catch {
            endpoint.close()
            throw JailError.failed("--syslog", error)
        }
        if pid == 0 {
            var relay = SyslogRelay(inside: endpoint.inside, target: endpoint.target, jail: endpoint.jail)
            relay.run()
        }
        endpoint.close()
        return pid
    }

    mutating func run() -> Never {
        let keep = [inside.rawValue, target?.rawValue ?? 2, 2]
        closeDescriptors(keeping: keep)
        // init blocks its signals for its signalfd; the relay must die of SIGTERM at stop.
        resetSignalHandling()
        do { try Hardening.forbidDumps() } catch {
            log.error("syslog relay: \(error)")
            _exit(1)
        }
        setProcessTitle(ProcessTitle.syslogRelay)
        // The largest datagram, never filled in advance: a page is resident only once a message
        // reached it, and all go back to the kernel when the relay is idle (waitForMessage).
        let buffer = ReceiveBuffer()
        var idlePages = IdlePages()
        while true {
            reportDrops(now: monotonicMilliseconds())
            // While messages are being dropped, wake at the window's end to report them. A wait
            // or a receive that fails is tried again at the next turn, as one that EINTR cut
            // short: a datagram socket's queue has nothing a failed call could lose.
            guard waitForMessage(&idlePages, buffer) else { continue }
            var failure: SystemError?
            let received: Int?
            do throws(SystemError) { received = try inside.receiveSome(into: buffer.bytes, datagramLength: true) } catch {
                failure = error
                received = nil
            }
            guard failure == nil, let n = received else { continue }
            reportDrops(now: monotonicMilliseconds())
            // A spent second drops what comes unread beyond recv: no rewrite, no CPU for a flood.
            guard !budget.isSpent else {
                budget.dropped(n)
                continue
            }
            let message = SyslogMessage.rewrite(buffer.prefix(n), jail: jail, receivedBytes: n)
            if budget.fits(message.count) && forward(message) { budget.forwarded(message.count) } else { budget.dropped(n) }
        }
    }

    /// Waits for the next datagram (true) or the budget's timeout (false). After a second
    /// without messages, the next wait gives back first what the relay holds and does not need
    /// while idle, as init's loop does (IdlePages): the buffer's pages, the code pages mapped
    /// since the fork (the relay's own pagemap is host root's: code only, as the spare's wait
    /// does), the stack below, the heap's free pages. Idle, the relay then holds its
    /// copy-on-write share of init's pages and little else.
    func waitForMessage(_ idlePages: inout IdlePages, _ buffer: ReceiveBuffer) -> Bool {
        let timeout = idlePages.timeout(budget.timeout(now: monotonicMilliseconds()))
        var entry = pollfd(fd: inside.rawValue, events: Int16(POLLIN), revents: 0)
        let ready: Int32
        if idlePages.takeRelease() {
            buffer.release()
            ready = cj_poll_releasing_code_pages(&entry, 1, timeout)
        } else {
            ready = poll(&entry, 1, timeout)
        }
        // A failed poll (EINTR) counts as a wake: the loop turns and waits again.
        idlePages.afterWait(woke: ready != 0)
        return ready > 0
    }

    /// At a new second, one message saying how much the last one dropped, if anything.
    mutating func reportDrops(now: Int64) {
        guard let drops = budget.tick(now: now) else { return }
        let report = "<44>jail/\(jail): jaild: \(drops.messages) messages (\(drops.bytes) bytes) from the jail dropped in the "
            + "last second (limit \(budget.messages) messages and \(budget.bytes) bytes a second, or the host's syslog busy)"
        // A host too busy for the report loses it as it lost the messages: nothing else to do.
        _ = forward(Array(report.utf8))
    }

    /// One datagram, without blocking; a host daemon with a smaller limit gets it cut in half
    /// until it fits (truncated, not dropped).
    func forward(_ message: [UInt8]) -> Bool {
        guard let target else { return writeToLog(message) }
        var length = message.count
        while true {
            var failure: SystemError?
            let sent = message.withUnsafeBytes { bytes in
                do throws(SystemError) { return try target.sendSome(UnsafeRawBufferPointer(rebasing: bytes[..<length])) } catch {
                    failure = error
                    return -1
                }
            }
            guard let failure else { return sent > 0 || length == 0 }  // 0: the host's socket is full, dropped
            guard failure.errno == .messageTooLong, length > 512 else { return false }
            length /= 2
        }
    }

    /// No host syslog: the message as one info line on init's log pipe, without its `<PRI>`
    /// (the rewrite made it one line of safe characters; the supervisor escapes it again).
    func writeToLog(_ message: [UInt8]) -> Bool {
        var text = message[...]
        if text.first == UInt8(ascii: "<"), let end = text.firstIndex(of: UInt8(ascii: ">")), end - text.startIndex <= 4 {
            text = text[(end + 1)...]
        }
        let line = [UInt8(ascii: "i")] + Array(text.prefix(LineSplitter.maxLine - 2)) + [10]
        return (try? FileDescriptor(rawValue: 2).writeFully(line)) != nil
    }
}

/// The relay's receive buffer: room for the largest datagram, page-aligned so that an idle
/// relay can give its pages back (MADV_DONTNEED: the next message finds zero pages, which
/// recv fills). Never freed: it lives as long as the relay.
final class ReceiveBuffer {
    static let size = 65536
    let bytes: UnsafeMutableRawBufferPointer

    init() {
        bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.size, alignment: Int(sysconf(Int32(_SC_PAGESIZE))))
    }

    /// The first `count` bytes received (at most the buffer's), copied out.
    func prefix(_ count: Int) -> ArraySlice<UInt8> {
        ArraySlice(UnsafeRawBufferPointer(rebasing: bytes[..<min(count, bytes.count)]))
    }

    /// Gives the pages back; their contents are no longer needed (each message is copied out).
    func release() {
        // A failure leaves them resident, as they were: nothing to report.
        _ = madvise(bytes.baseAddress, bytes.count, MADV_DONTNEED)
    }
}
