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
    public static func hostIDsInUse(passwd: String, group: String, subuid: String, subgid: String,
                                    ids: [UInt32]) -> [ClosedRange<UInt64>] {
        var used: [ClosedRange<UInt64>] = ids.map { UInt64($0)...UInt64($0) }
        for text in [passwd, group] {
            for fields in records(text) where fields.count > 2 {
                if let id = UInt64(fields[2]) { used.append(id...id) }
            }
        }
        for text in [subuid, subgid] {
            for fields in records(text) where fields.count > 2 {
                if let start = UInt64(fields[1]), let count = UInt64(fields[2]), count > 0 {
                    used.append(start...(start + count - 1))
                }
            }
        }
        return used
    }

    /// The lines of /etc/passwd, /etc/subuid and the like, each split at ':', cut on bytes:
    /// splitting by Character (grapheme breaking) cost about 3 ms of every start, measured.
    static func records(_ text: String) -> [[Substring]] {
        text.utf8.split(separator: UInt8(ascii: "\n")).map { line in
            line.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false).map { Substring($0) }
        }
    }

    /// The lines of `text` without surrounding spaces, tabs and carriage returns, on bytes.
    static func trimmedLines(_ text: String) -> [Substring] {
        let isSpace = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") }
        return text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
            var start = line.startIndex
            var end = line.endIndex
            while start < end, isSpace(line[start]) { start = line.index(after: start) }
            while end > start, isSpace(line[line.index(before: end)]) { end = line.index(before: end) }
            return Substring(line[start..<end])
        }
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
    public static func conflict(start: UInt32, passwd: String, group: String, subuid: String, subgid: String,
                                ids: [UInt32]) -> String? {
        let range = UInt64(start)...(UInt64(start) + UInt64(insideCount) - 1)
        if let id = ids.first(where: { range.contains(UInt64($0)) }) { return "the jail user's own id \(id)" }
        // Every start checks these, a line per tenant each: scanned on bytes, no array per line.
        for (path, text) in [("/etc/passwd", passwd), ("/etc/group", group)] {
            var found: String?
            scanRecords(text) { line, _, id in
                guard let id, range.contains(id) else { return false }
                let name = line.split(separator: UInt8(ascii: ":"), maxSplits: 1, omittingEmptySubsequences: false).first
                found = "\(path) gives id \(id) to \(name.map { String(Substring($0)) } ?? "")"
                return true
            }
            if let found { return found }
        }
        let own = reservation(start: start)
        for (path, text) in [("/etc/subuid", subuid), ("/etc/subgid", subgid)] {
            var found: String?
            scanRecords(text) { line, first, count in
                guard let first, let count, count > 0, (first...(first + count - 1)).overlaps(range) else { return false }
                let trimmed = trimmedLines(String(Substring(line)))[0]
                if trimmed == own { return false }
                found = "\(path) has '\(trimmed)'"
                return true
            }
            if let found { return found }
        }
        return nil
    }

    /// Calls `body` with each line of `text` and the numbers of its second and third
    /// ':'-separated fields (nil where a field is not a plain number) until it returns true.
    static func scanRecords(_ text: String, _ body: (Substring.UTF8View, UInt64?, UInt64?) -> Bool) {
        let bytes = text.utf8
        var lineStart = bytes.startIndex
        while lineStart < bytes.endIndex {
            let lineEnd = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.endIndex
            // Spaces, tabs and carriage returns around the line are not part of it (trimmedLines).
            let isSpace = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") }
            var contentEnd = lineEnd
            while contentEnd > lineStart, isSpace(bytes[bytes.index(before: contentEnd)]) { contentEnd = bytes.index(before: contentEnd) }
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
                index = bytes.index(after: index)
            }
            if field == 1 { second = number.value } else if field == 2 { third = number.value }
            if body(Substring(bytes[lineStart..<lineEnd]).utf8, second, third) { return }
            lineStart = lineEnd == bytes.endIndex ? lineEnd : bytes.index(after: lineEnd)
        }
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
        trimmedLines(text).contains { $0 == line }
    }

    /// `text` with `line` at its end (a missing final newline added first).
    public static func adding(_ line: String, to text: String) -> String {
        text + (text.isEmpty || text.utf8.last == UInt8(ascii: "\n") ? "" : "\n") + line + "\n"
    }

    /// `text` without the lines that are exactly `line`; every other byte as it was.
    public static func removing(_ line: String, from text: String) -> String {
        let lines = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        return zip(lines, trimmedLines(text)).filter { $0.1 != line }.map { String(Substring($0.0)) }
            .joined(separator: "\n")
    }
}
