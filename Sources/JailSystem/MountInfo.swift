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
            var fields: [Range<Int>] = []
            var lineStart = 0
            while lineStart < bytes.count {
                var lineEnd = lineStart
                while lineEnd < bytes.count && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
                fields.removeAll(keepingCapacity: true)
                var fieldStart = lineStart
                for index in lineStart...lineEnd where index == lineEnd || bytes[index] == UInt8(ascii: " ") {
                    if index > fieldStart { fields.append(fieldStart..<index) }
                    fieldStart = index + 1
                }
                if let entry = entry(fields, in: bytes) { entries.append(entry) }
                lineStart = lineEnd + 1
            }
        }
        return entries
    }

    static func entry(_ fields: [Range<Int>], in bytes: UnsafeBufferPointer<UInt8>) -> MountInfoEntry? {
        // Optional fields (shared:N, master:N) stand between the sixth field and the separator.
        guard let separator = fields.indices.first(where: { $0 >= 5 && fields[$0].count == 1 && bytes[fields[$0].lowerBound] == UInt8(ascii: "-") }),
              separator + 3 < fields.count else { return nil }
        func text(_ range: Range<Int>) -> String { String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self) }
        return MountInfoEntry(mountPoint: unescape(UnsafeBufferPointer(rebasing: bytes[fields[4]])),
                              fsType: text(fields[separator + 1]), superOptions: text(fields[separator + 3]))
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
