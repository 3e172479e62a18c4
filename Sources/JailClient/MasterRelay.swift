import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The bytes of a terminal session, moved by the client itself between its own terminal
/// (fds 0 and 1) and the jail pty's master, which the session helper passed to it.
///
/// Output: the master is read until it has nothing more now (EAGAIN), has ended (EIO: every
/// holder of the slave has closed it) or `chunk` bytes are in, then they go to stdout in one
/// blocking write. A slow terminal slows the program down through the pty's own small buffer
/// (about 12 KiB); nothing piles up here.
///
/// Input: stdin is read only while none of it waits for the master, and written to the
/// master without blocking. A program that does not read its terminal fills the pty's input
/// queue; then at most one chunk waits here, stdin is left unread, and output keeps flowing.
/// stdin and stdout stay blocking: they are shared with the caller (a shell, sshd), and the
/// poll says when stdin has bytes.
struct MasterRelay {
    static let chunk = 64 << 10

    let master: FileDescriptor
    /// The master read EIO: the program and everything that held its terminal are gone.
    private(set) var outputEnded = false
    /// stdout's reader is gone (EPIPE): the session should end as a writer to it would.
    private(set) var stdoutGone = false
    /// Bytes read from stdin that the master has not taken yet; `inputStart` of them are out.
    private var input: [UInt8] = []
    private var inputStart = 0
    /// One chunk, reused for every read of the master.
    private var buffer = [UInt8](repeating: 0, count: MasterRelay.chunk)

    init(master: FileDescriptor) {
        self.master = master
        try? master.setNonBlocking(true)
    }

    var pendingInput: Int { input.count - inputStart }

    /// Reads the master until EAGAIN, EIO or `limit` bytes, and writes what it read to
    /// stdout. Returns the bytes read.
    @discardableResult
    mutating func forwardOutput(limit: Int = MasterRelay.chunk) -> Int {
        let fd = master.rawValue
        let wanted = min(limit, buffer.count)
        var filled = 0
        var ended = false
        buffer.withUnsafeMutableBytes { raw in
            while filled < wanted {
                let n = Glibc.read(fd, raw.baseAddress! + filled, wanted - filled)
                if n > 0 {
                    filled += n
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
        writeOutput(filled)
        return filled
    }

    /// Blocking writes, as the stdio relay's: a slow reader slows the session down.
    private mutating func writeOutput(_ count: Int) {
        let stdout = FileDescriptor(rawValue: 1)
        var offset = 0
        while offset < count && !stdoutGone {
            do {
                let n = try stdout.writeSome(buffer[offset..<count])
                if n == 0 { try stdout.waitWritable() } else { offset += n }
            } catch {
                // A terminal that hung up (EIO) drops the output; SIGHUP ends the client.
                if error.errno == .brokenPipe { stdoutGone = true }
                return
            }
        }
    }

    /// The program has ended (the exit frame came): what it left in the pty, then no more.
    /// Read until EIO, EAGAIN, or what is queued now plus one chunk, so a background child
    /// that keeps the slave open and keeps writing cannot hold the session open. The pty
    /// holds about 12 KiB, so everything the program wrote fits in that budget.
    mutating func drain() {
        var budget = max(0, Int(cj_bytes_queued(master.rawValue))) + Self.chunk
        while !outputEnded && !stdoutGone && budget > 0 {
            let n = forwardOutput(limit: budget)
            if n == 0 { break }
            budget -= n
        }
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
