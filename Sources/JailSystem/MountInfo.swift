/// The lines of /proc/PID/mountinfo (proc(5)) that jaild reads: each mount's point, file
/// system type and super options. Read as bytes: the collection `split(separator: " - ")`
/// this replaces cost a start 0.5 ms in the supervisor and as much again in init on a host
/// of 20 mounts (perf, issue 36).
public struct MountInfoEntry: Equatable, Sendable {
    /// Field 5, with the kernel's octal escapes (space, tab, newline, backslash) undone.
    public var mountPoint: String
    /// The first field after the " - " separator, e.g. cgroup2.
    public var fsType: String
    /// The third field after the separator, e.g. rw,memory.
    public var superOptions: String

    public init(mountPoint: String, fsType: String, superOptions: String) {
        self.mountPoint = mountPoint
        self.fsType = fsType
        self.superOptions = superOptions
    }

    /// Every well-formed line of `text`; a line without five fields before its separator or
    /// three after it is skipped.
    public static func parseAll(_ text: String) -> [MountInfoEntry] {
        var entries: [MountInfoEntry] = []
        var text = text
        text.withUTF8 { bytes in
            // Field bounds as two arrays of Int: an array of ranges is a type of its own the
            // runtime would look up at its first use, a tenth of a millisecond of a start.
            var starts: [Int] = [], ends: [Int] = []
            ByteLines.forEach(in: bytes) { lineStart, lineEnd in
                starts.removeAll(keepingCapacity: true)
                ends.removeAll(keepingCapacity: true)
                // Spaces separate the fields (the kernel escapes those in paths): runs of them are one.
                ByteLines.forEachField(in: bytes, lineStart, lineEnd, separator: UInt8(ascii: " ")) { start, end in
                    if end > start {
                        starts.append(start)
                        ends.append(end)
                    }
                }
                if let entry = entry(starts: starts, ends: ends, in: bytes) { entries.append(entry) }
            }
        }
        return entries
    }

    static func entry(starts: [Int], ends: [Int], in bytes: UnsafeBufferPointer<UInt8>) -> MountInfoEntry? {
        // Optional fields (shared:N, master:N) stand between the sixth field and the separator.
        var separator = 5
        while separator < starts.count && !(ends[separator] - starts[separator] == 1 && bytes[starts[separator]] == UInt8(ascii: "-")) {
            separator += 1
        }
        guard separator + 3 < starts.count else { return nil }
        return MountInfoEntry(mountPoint: unescape(UnsafeBufferPointer(rebasing: bytes[starts[4]..<ends[4]])),
                              fsType: ByteLines.text(bytes, starts[separator + 1], ends[separator + 1]),
                              superOptions: ByteLines.text(bytes, starts[separator + 3], ends[separator + 3]))
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    public static func unescape(_ field: String) -> String {
        var field = field
        return field.withUTF8 { unescape($0) }
    }

    static func unescape(_ field: UnsafeBufferPointer<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(field.count)
        var index = 0
        while index < field.count {
            if field[index] == UInt8(ascii: "\\"), let code = octal(field, at: index + 1) {
                out.append(code)
                index += 4
            } else {
                out.append(field[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The byte three octal digits from `start` stand for, nil if they are not three octal
    /// digits of a byte.
    static func octal(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int) -> UInt8? {
        guard start + 3 <= bytes.count else { return nil }
        var value = 0
        for byte in bytes[start..<start + 3] {
            guard (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(byte) else { return nil }
            value = value * 8 + Int(byte - UInt8(ascii: "0"))
        }
        return value <= 255 ? UInt8(value) : nil
    }
}
