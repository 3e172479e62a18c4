/// What the supervisor (host root, in no cgroup of the jail's) does with bytes the jail writes
/// into its log: a jail process can hold the boot output pipe forever and write anything into
/// it, so every cost is bounded. A line is at most `maxLine` bytes (a longer one is cut, its
/// rest becomes the next lines), each byte is scanned once, and what is logged is escaped.
struct LineSplitter {
    static let maxLine = 4096
    private(set) var pending: [UInt8] = []

    /// Calls `emit` for each complete (or cut) line in `chunk`; keeps the unfinished rest.
    mutating func feed(_ chunk: [UInt8], _ emit: (_ line: [UInt8], _ cut: Bool) -> Void) {
        var rest = chunk[...]
        while !rest.isEmpty {
            let window = rest.prefix(Self.maxLine - pending.count)
            if let newline = window.firstIndex(of: 10) {
                pending += rest[..<newline]
                emit(pending, false)
                pending.removeAll(keepingCapacity: true)
                rest = rest[(newline + 1)...]
            } else {
                pending += window
                rest = rest.dropFirst(window.count)
                if pending.count == Self.maxLine {
                    emit(pending, true)
                    pending.removeAll(keepingCapacity: true)
                }
            }
        }
    }

    /// The unfinished last line, at end of stream.
    mutating func finish(_ emit: (_ line: [UInt8], _ cut: Bool) -> Void) {
        if !pending.isEmpty { emit(pending, false) }
        pending.removeAll()
    }

    /// A jail's text made safe for a host log by the one escaper (Logfmt.printable): control
    /// characters C0, DEL and C1 (terminal escapes, a carriage return that would hide the
    /// prefix, U+009B CSI) become \xNN, bidi overrides and separators \u{NNNN}, bad UTF-8 U+FFFD.
    static func escaped(_ line: [UInt8]) -> String {
        Logfmt.printable(line)
    }
}

/// How much of a jail's output the supervisor takes per second: `lines` log lines (the rest
/// are counted and reported once a second) and `bytes` read from the pipe (beyond that the
/// supervisor stops reading until the next second, so the writer blocks: backpressure, no
/// CPU spent).
struct LogBudget {
    let lines: Int
    let bytes: Int
    var windowStart: Int64 = 0
    var linesUsed = 0
    var bytesUsed = 0
    var dropped = 0

    init(lines: Int = 100, bytes: Int = 1 << 20) {
        self.lines = lines
        self.bytes = bytes
    }

    /// Starts a new one-second window if the old one is over; returns the count of lines
    /// dropped in the old one (to report), or 0.
    mutating func tick(now: Int64) -> Int {
        guard now - windowStart >= 1000 else { return 0 }
        windowStart = now
        linesUsed = 0
        bytesUsed = 0
        defer { dropped = 0 }
        return dropped
    }

    /// Whether one more line may be logged in this window; counts it either way.
    mutating func admitLine() -> Bool {
        if linesUsed < lines {
            linesUsed += 1
            return true
        }
        dropped += 1
        return false
    }

    mutating func consumed(bytes count: Int) { bytesUsed += count }

    /// May the pipe be read now? (Never more than `bytes` a second.)
    var mayRead: Bool { bytesUsed < bytes }

    /// How long the supervisor may sleep before the window must be looked at again: until
    /// its end while reading is paused or a drop count waits to be reported; else forever.
    func timeout(now: Int64) -> Int32 {
        guard !mayRead || dropped > 0 else { return -1 }
        return Int32(max(0, windowStart + 1000 - now))
    }
}
