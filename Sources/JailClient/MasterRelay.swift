import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The bytes of a terminal session, moved by the client itself between its own terminal
/// (fds 0 and 1) and the jail pty's master, which the session helper passed to it.
///
/// Output: the master is read until it has nothing more now (EAGAIN, or a read shorter than
/// the line discipline's buffer), has ended (EIO: every holder of the slave has closed it) or
/// a chunk is in, then written to the terminal as far as it takes it without blocking. Up to
/// `outputLimit` bytes wait here, so the jail's pty and ours both keep moving; a terminal
/// slower than that stops the reads, and the program waits on its pty (about 12 KiB):
/// nothing grows.
///
/// Input: stdin is read only while none of it waits for the master, and written to the
/// master without blocking. A program that does not read its terminal fills the pty's input
/// queue; then at most one chunk waits here, stdin is left unread, and output keeps flowing.
/// fd 0 stays blocking (it is shared with the caller, a shell or sshd); the poll says when it
/// has bytes.
struct MasterRelay {
    static let chunk = 64 << 10
    /// What one read of a pty master gives at most: n_tty's buffer (4 KiB, one byte kept).
    static let lineDisciplineBytes = 4095
    /// Output read from the master and not yet written: the stage between the two ptys (the
    /// jail's and ours), so that both keep moving while the other waits.
    static let outputLimit = 256 << 10

    let master: FileDescriptor
    /// Where output goes: our terminal through a description of its own, non-blocking (fds 0
    /// and 1 are shared with the caller, their flags are not ours to change); or fd 1 itself,
    /// written blocking, when it is not a terminal (a pipe, a file: its offset is shared) or
    /// cannot be opened again.
    let output: FileDescriptor
    let outputBlocks: Bool
    /// The master read EIO: the program and everything that held its terminal are gone.
    private(set) var outputEnded = false
    /// stdout's reader is gone (EPIPE): the session should end as a writer to it would.
    private(set) var stdoutGone = false
    /// Bytes read from stdin that the master has not taken yet; `inputStart` of them are out.
    private var input: [UInt8] = []
    private var inputStart = 0
    /// Output not yet written: `buffer[outputStart..<outputEnd]`.
    private var buffer = [UInt8](repeating: 0, count: MasterRelay.outputLimit)
    private var outputStart = 0
    private var outputEnd = 0

    init(master: FileDescriptor) {
        self.master = master
        try? master.setNonBlocking(true)
        let own = isatty(1) == 1 ? open("/proc/self/fd/1", O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC) : -1
        output = FileDescriptor(rawValue: own >= 0 ? own : 1)
        outputBlocks = own < 0
    }

    var pendingInput: Int { input.count - inputStart }
    var pendingOutput: Int { outputEnd - outputStart }
    /// Room for one more read of the master (its line discipline gives at most 4 KiB a read).
    var canReadOutput: Bool { !outputEnded && buffer.count - pendingOutput >= 4096 }

    /// Reads the master until EAGAIN, EIO, a short read, `limit` bytes or a full buffer, then
    /// writes what the terminal takes now. Returns the bytes read.
    @discardableResult
    mutating func forwardOutput(limit: Int = MasterRelay.chunk) -> Int {
        if outputStart > 0 && buffer.count - outputEnd < Self.chunk {
            // Keep the pending bytes at the front so each read gets a whole chunk of room.
            let (from, count) = (outputStart, pendingOutput)
            buffer.withUnsafeMutableBytes { raw in
                _ = memmove(raw.baseAddress!, raw.baseAddress! + from, count)
            }
            outputStart = 0
            outputEnd = count
        }
        let fd = master.rawValue
        let first = outputEnd
        let wanted = min(limit, buffer.count - outputEnd)
        var filled = 0
        var ended = false
        buffer.withUnsafeMutableBytes { raw in
            while filled < wanted {
                let n = Glibc.read(fd, raw.baseAddress! + first + filled, wanted - filled)
                if n > 0 {
                    filled += n
                    // Less than the line discipline's whole buffer: it is empty now, and a
                    // read again would most likely say EAGAIN (a keystroke's echo, say).
                    if n < Self.lineDisciplineBytes { break }
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    // EAGAIN: nothing more now. EIO (or end of file): nobody holds the slave.
                    ended = n == 0 || errno != EAGAIN
                    break
                }
            }
        }
        if ended { outputEnded = true }
        outputEnd += filled
        flushOutput()
        return filled
    }

    /// Writes what the terminal takes now (all of it, blocking, when `outputBlocks`).
    mutating func flushOutput() {
        while pendingOutput > 0 && !stdoutGone {
            do {
                let n = try output.writeSome(buffer[outputStart..<outputEnd])
                if n == 0 {
                    if !outputBlocks { return }
                    try output.waitWritable()
                }
                outputStart += n
            } catch {
                // A terminal that hung up (EIO) drops the output; SIGHUP ends the client.
                if error.errno == .brokenPipe { stdoutGone = true }
                outputStart = outputEnd
            }
        }
        if outputStart == outputEnd {
            outputStart = 0
            outputEnd = 0
        }
    }

    /// The program has ended (the exit frame came): what it left in the pty, then no more.
    /// Read until EIO, EAGAIN, or what is queued now plus one chunk, so a background child
    /// that keeps the slave open and keeps writing cannot hold the session open. The pty
    /// holds about 12 KiB, so everything the program wrote fits in that budget. Returns
    /// once all of it is written.
    mutating func drain() {
        // forwardOutput stops at a short read; here only EAGAIN, EIO or the budget end it.
        var budget = max(0, Int(cj_bytes_queued(master.rawValue))) + Self.chunk
        while !outputEnded && !stdoutGone && budget > 0 {
            if !canReadOutput { waitAndFlush() }
            let n = forwardOutput(limit: budget)
            if n == 0 { break }
            budget -= n
        }
        while pendingOutput > 0 && !stdoutGone { waitAndFlush() }
    }

    private mutating func waitAndFlush() {
        do { try output.waitWritable() } catch { outputStart = outputEnd }
        flushOutput()
    }

    /// Reads what stdin has (the poll said it is readable); false at its end.
    mutating func readInput() -> Bool {
        precondition(pendingInput == 0, "stdin is read only once the master took the last input")
        let chunk: [UInt8]?
        do { chunk = try FileDescriptor(rawValue: 0).readChunk(max: Self.chunk) } catch { return false }
        guard let chunk else { return true }
        if chunk.isEmpty { return false }
        input = chunk
        inputStart = 0
        feedMaster()
        return true
    }

    /// Writes what the master takes now, without blocking.
    mutating func feedMaster() {
        guard pendingInput > 0 else { return }
        do {
            inputStart += try master.writeSome(input[inputStart...])
        } catch {
            // EIO: nobody holds the slave any more, so these bytes have no reader.
            inputStart = input.count
        }
        if inputStart == input.count {
            input.removeAll(keepingCapacity: true)
            inputStart = 0
        }
    }

    /// The client's terminal changed size (or may have, while the master was on its way):
    /// the pty takes it, and the kernel sends SIGWINCH to its foreground group.
    static func copyWindowSize(to master: FileDescriptor) {
        var rows: UInt16 = 0
        var cols: UInt16 = 0
        if cj_get_window_size(0, &rows, &cols) == 0 { _ = cj_set_window_size(master.rawValue, rows, cols) }
    }
}
