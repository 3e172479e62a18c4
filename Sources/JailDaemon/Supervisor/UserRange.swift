#if canImport(Glibc)
import Glibc
#endif

/// The pure part of a jail's user namespace: which slot of the pool a jail gets and the lines
/// of its uid_map and gid_map. The files it is read from and written to are UserRangeStore's.
public enum UserRange {
    /// The ids a jail holds on the host: one slot of the pool, reserved for it in /etc/subuid
    /// and /etc/subgid.
    public static let insideCount: UInt32 = 65536
    /// Ids inside the jail that map to its range: 0–65534 (besides the user's own). 65535,
    /// (uid16_t)-1, is no id anyone uses; its host id, the range's last, is the namespace's
    /// owner (`namespaceOwner`), mapped nowhere.
    public static let mappedCount: UInt32 = 65535

    /// The host uid that owns the jail's user namespace: the kernel charges the namespace's
    /// per-user counts (inotify instances and watches, namespaces, fanotify, the rlimit
    /// counts) to it, so each jail has counts of its own instead of host root's. It is the
    /// range's last id: no account has it (the range is reserved), no process of the jail can
    /// become it (it is mapped nowhere), and a process in the host's namespace with that euid,
    /// which would hold every capability over the jail, can only be made by host root.
    public static func namespaceOwner(start: UInt32) -> UInt32 { start + insideCount - 1 }

    /// The line of /etc/subuid and /etc/subgid that reserves the range, owned by root as LXD
    /// and Incus reserve theirs: useradd allocates around it, and only root may newuidmap it.
    public static func reservation(start: UInt32) -> String { "root:\(start):\(insideCount)" }

    /// Host ids taken by someone else: an id of /etc/passwd or /etc/group, a range of
    /// /etc/subuid or /etc/subgid, or one of `ids` (the jail user's own uid and gid).
    public static func hostIDsInUse(_ files: HostIDFiles, ids: [UInt32]) -> [ClosedRange<UInt64>] {
        var used: [ClosedRange<UInt64>] = ids.map { UInt64($0)...UInt64($0) }
        // A line per tenant in each: one pass over the bytes, nothing allocated but `used`.
        for bytes in [files.passwd, files.group] {
            scanRecords(bytes) { _, _, id in
                if let id { used.append(id...id) }
                return false
            }
        }
        for bytes in [files.subuid, files.subgid] {
            scanRecords(bytes) { _, start, count in
                if let start, let count, count > 0 { used.append(span(start, count)) }
                return false
            }
        }
        return used
    }

    /// The same from text (tests, and callers that have it as text).
    public static func hostIDsInUse(passwd: String, group: String, subuid: String, subgid: String,
                                    ids: [UInt32]) -> [ClosedRange<UInt64>] {
        hostIDsInUse(HostIDFiles(passwd: passwd, group: group, subuid: subuid, subgid: subgid), ids: ids)
    }

    /// The first slot of the pool that holds no id in use and is not another jail's.
    public static func choose(pool: UserRangePool, inUse: [ClosedRange<UInt64>], taken: Set<UInt32>) -> UInt32? {
        candidates(pool: pool, inUse: inUse, taken: taken).first
    }

    /// Every free slot, in order (the store tries them until one is claimed).
    public static func candidates(pool: UserRangePool, inUse: [ClosedRange<UInt64>], taken: Set<UInt32>) -> [UInt32] {
        pool.slots.filter { slot in
            !taken.contains(slot) && !overlaps(slot, inUse)
        }
    }

    static func overlaps(_ slot: UInt32, _ inUse: [ClosedRange<UInt64>]) -> Bool {
        let range = UInt64(slot)...(UInt64(slot) + UInt64(UserRangePool.slotSize) - 1)
        return inUse.contains { $0.overlaps(range) }
    }

    /// uid_map (or gid_map) text: `id` is itself on both sides, every other id of 0–65534
    /// inside is `start` + that id on the host. Inside ranges and host ranges are disjoint,
    /// as the kernel requires; `start` + 65535 (the owner) is in none.
    public static func mapLines(keeping id: UInt32, start: UInt32) -> String {
        guard id < mappedCount else { return "0 \(start) \(mappedCount)\n\(id) \(id) 1\n" }
        var lines = ""
        if id > 0 { lines += "0 \(start) \(id)\n" }
        lines += "\(id) \(id) 1\n"
        if id + 1 < mappedCount { lines += "\(id + 1) \(start + id + 1) \(mappedCount - id - 1)\n" }
        return lines
    }

    /// What takes an id of the range starting at `start` besides the jail itself, for the one
    /// line that refuses the start: an account or group with an id in it, a subordinate range
    /// over it that is not the jail's own reservation, or the jail user's own uid or gid.
    public static func conflict(start: UInt32, files: HostIDFiles, ids: [UInt32]) -> String? {
        let range = UInt64(start)...(UInt64(start) + UInt64(insideCount) - 1)
        if let id = ids.first(where: { range.contains(UInt64($0)) }) { return "the jail user's own id \(id)" }
        // Every start checks these, a line per tenant each: scanned on bytes, nothing allocated
        // unless a line is found.
        for (path, bytes) in [("/etc/passwd", files.passwd), ("/etc/group", files.group)] {
            var found: String?
            scanRecords(bytes) { line, _, id in
                guard let id, range.contains(id) else { return false }
                let name = line.firstIndex(of: UInt8(ascii: ":")).map { line[line.startIndex..<$0] } ?? line[...]
                found = "\(path) gives id \(id) to \(String(decoding: name, as: UTF8.self))"
                return true
            }
            if let found { return found }
        }
        let own = Array(reservation(start: start).utf8)
        for (path, bytes) in [("/etc/subuid", files.subuid), ("/etc/subgid", files.subgid)] {
            var found: String?
            scanRecords(bytes) { line, first, count in
                guard let first, let count, count > 0, span(first, count).overlaps(range) else { return false }
                let trimmed = trimmed(line)
                if trimmed.elementsEqual(own) { return false }
                found = "\(path) has '\(String(decoding: trimmed, as: UTF8.self))'"
                return true
            }
            if let found { return found }
        }
        return nil
    }

    /// The same from text (tests).
    public static func conflict(start: UInt32, passwd: String, group: String, subuid: String, subgid: String,
                                ids: [UInt32]) -> String? {
        conflict(start: start, files: HostIDFiles(passwd: passwd, group: group, subuid: subuid, subgid: subgid), ids: ids)
    }

    /// Calls `body` with each line of `text` and the numbers of its second and third
    /// ':'-separated fields (nil where a field is not a plain number) until it returns true.
    static func scanRecords(_ text: String, _ body: (Substring.UTF8View, UInt64?, UInt64?) -> Bool) {
        var contiguous = text
        contiguous.withUTF8 { buffer in
            scanRecords(buffer) { line in
                // The line's offsets in the buffer are those of its bytes in `text`.
                let utf8 = text.utf8
                let lower = utf8.index(utf8.startIndex, offsetBy: line.range.lowerBound)
                let upper = utf8.index(lower, offsetBy: line.range.count)
                return body(Substring(utf8[lower..<upper]).utf8, line.second, line.third)
            }
        }
    }

    /// The same on bytes: `line` is the line's bytes (without its newline).
    static func scanRecords(_ bytes: [UInt8], _ body: (ArraySlice<UInt8>, UInt64?, UInt64?) -> Bool) {
        bytes.withUnsafeBufferPointer { buffer in
            scanRecords(buffer) { line in body(bytes[line.range], line.second, line.third) }
        }
    }

    /// One line of a colon-separated file: where it is, and its second and third fields as numbers.
    struct Record {
        var range: Range<Int>
        var second: UInt64?
        var third: UInt64?
    }

    /// The scan itself, on a buffer: no array, no string. Spaces, tabs and carriage returns at
    /// the end of a line are not part of its last field (as `trimmed` leaves it).
    static func scanRecords(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (Record) -> Bool) {
        var lineStart = 0
        let end = bytes.count
        while lineStart < end {
            // memchr: the newline found a word at a time, not a byte at a time.
            let lineEnd = memchr(bytes.baseAddress! + lineStart, Int32(UInt8(ascii: "\n")), end - lineStart)
                .map { UnsafePointer($0.assumingMemoryBound(to: UInt8.self)) - bytes.baseAddress! } ?? end
            var contentEnd = lineEnd
            while contentEnd > lineStart, isSpace(bytes[contentEnd - 1]) { contentEnd -= 1 }
            var second: UInt64?
            var third: UInt64?
            var field = 0
            var number = Number()
            var index = lineStart
            while index < contentEnd {
                let byte = bytes[index]
                if byte == UInt8(ascii: ":") {
                    if field == 1 { second = number.value } else if field == 2 { third = number.value }
                    field += 1
                    number = Number()
                    if field > 2 { break }
                } else if field == 1 || field == 2 {
                    number.append(byte)
                }
                index += 1
            }
            if field == 1 { second = number.value } else if field == 2 { third = number.value }
            if body(Record(range: lineStart..<lineEnd, second: second, third: third)) { return }
            lineStart = lineEnd + 1
        }
    }

    /// The ids of a subordinate range, `count` from `first` (to the last id there is, when
    /// the line says more).
    static func span(_ first: UInt64, _ count: UInt64) -> ClosedRange<UInt64> {
        let (last, overflow) = first.addingReportingOverflow(count - 1)
        return first...(overflow ? UInt64.max : last)
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }

    /// `line` without the spaces, tabs and carriage returns around it.
    static func trimmed(_ line: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var start = line.startIndex
        var end = line.endIndex
        while start < end, isSpace(line[start]) { start += 1 }
        while end > start, isSpace(line[end - 1]) { end -= 1 }
        return line[start..<end]
    }

    /// A decimal number read digit by digit: nil when empty, not all digits, or too large.
    private struct Number {
        var digits = 0
        var total: UInt64 = 0
        var valid = true

        mutating func append(_ byte: UInt8) {
            guard valid, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { valid = false; return }
            let (product, overflow) = total.multipliedReportingOverflow(by: 10)
            let (sum, carry) = product.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if overflow || carry { valid = false; return }
            (total, digits) = (sum, digits + 1)
        }

        var value: UInt64? { valid && digits > 0 ? total : nil }
    }

    /// Whether `text` (/etc/subuid or /etc/subgid) holds `line` as a line of its own.
    public static func holds(_ text: String, line: String) -> Bool {
        holds(Array(text.utf8), line: line)
    }

    /// The same on the file's bytes.
    public static func holds(_ bytes: [UInt8], line: String) -> Bool {
        let wanted = Array(line.utf8)
        var found = false
        scanRecords(bytes) { record, _, _ in
            found = trimmed(record).elementsEqual(wanted)
            return found
        }
        return found
    }

    /// `text` with `line` at its end (a missing final newline added first).
    public static func adding(_ line: String, to text: String) -> String {
        text + (text.isEmpty || text.utf8.last == UInt8(ascii: "\n") ? "" : "\n") + line + "\n"
    }

    /// `text` without the lines that are exactly `line`; every other byte as it was. On bytes,
    /// a line at a time (each destroy runs it over a line per tenant).
    public static func removing(_ line: String, from text: String) -> String {
        let wanted = Array(line.utf8)
        let bytes = Array(text.utf8)
        var kept: [UInt8] = []
        kept.reserveCapacity(bytes.count)
        var lineStart = 0
        var first = true
        while lineStart <= bytes.count {
            let lineEnd = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            let content = bytes[lineStart..<lineEnd]
            if !trimmed(content).elementsEqual(wanted) {
                if !first { kept.append(UInt8(ascii: "\n")) }
                kept.append(contentsOf: content)
                first = false
            }
            lineStart = lineEnd + 1
        }
        return String(decoding: kept, as: UTF8.self)
    }
}

/// /etc/passwd, /etc/group, /etc/subuid and /etc/subgid as one start read them: each read once
/// and shared by the choice of a slot (`hostIDsInUse`) and its check (`conflict`).
public struct HostIDFiles: Sendable {
    public var passwd: [UInt8]
    public var group: [UInt8]
    public var subuid: [UInt8]
    public var subgid: [UInt8]

    public init(passwd: [UInt8], group: [UInt8], subuid: [UInt8], subgid: [UInt8]) {
        (self.passwd, self.group, self.subuid, self.subgid) = (passwd, group, subuid, subgid)
    }

    public init(passwd: String, group: String, subuid: String, subgid: String) {
        self.init(passwd: Array(passwd.utf8), group: Array(group.utf8), subuid: Array(subuid.utf8), subgid: Array(subgid.utf8))
    }

    /// Where the four files are: the host's, or a test's.
    public struct Paths: Sendable {
        public var passwd = "/etc/passwd"
        public var group = "/etc/group"
        public var subuid = "/etc/subuid"
        public var subgid = "/etc/subgid"

        public static let host = Paths()

        /// In HostIDFiles' order.
        var all: [String] { [passwd, group, subuid, subgid] }
    }
}
