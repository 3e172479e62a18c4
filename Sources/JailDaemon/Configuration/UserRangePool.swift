import JailSystem

/// Where the host ids of root-started jails come from: slots of 65,536 ids, one slot per jail.
/// `--userns-pool START:COUNT` (COUNT ids, a multiple of 65,536). /etc/subuid and /etc/subgid
/// ranges inside it are skipped, as are ids of existing accounts; each slot handed out is
/// reserved there (UserRangeStore).
///
/// The default, 2^30 up to 0x7FFE0000 (16,382 jails), lies
/// - above useradd's own subordinate ids (SUB_UID_MIN–SUB_UID_MAX of /etc/login.defs,
///   100000–600100000 by default): a pool that overlaps them is refused, since useradd hands
///   them out in order and would sooner or later reach it;
/// - above the range LXD and Incus are usually given (root:1000000:1000000000, up to
///   1,001,000,000);
/// - below systemd's "foreign" range 0x7FFE0000–0x7FFEFFFF and below 2^31, from where some
///   programs take ids for negative numbers (systemd's UIDS-GIDS.md advises against them).
/// 600100000 up to 2^31 would hold about 23,600 slots, but rounding to 2^30 keeps clear of
/// Incus's range and still leaves 16,382 slots, well over the 10,000 jails a host should fit.
/// It overlaps systemd-nspawn's --private-users=pick span (0x80000–0x6FFFFFFF), which
/// overlaps useradd's as well: nspawn picks among ranges that no file is owned by.
public struct UserRangePool: Equatable, Sendable, CustomStringConvertible {
    public static let slotSize: UInt32 = 65536
    public static let standard = UserRangePool(start: 1 << 30, count: 0x7FFE_0000 - (1 << 30))

    public var start: UInt32
    public var count: UInt32

    public init(start: UInt32, count: UInt32) {
        self.start = start
        self.count = count
    }

    public var description: String { "\(start):\(count)" }

    /// The first id of every slot, in order.
    public var slots: [UInt32] {
        (0..<(count / Self.slotSize)).map { start + $0 * Self.slotSize }
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let spec: String
        public let reason: String
        public var description: String { "--userns-pool '\(spec)': \(reason)" }
    }

    public static func parse(_ spec: String) throws(ParseError) -> UserRangePool {
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let start = UInt32(parts[0]), let count = UInt32(parts[1]) else {
            throw ParseError(spec: spec, reason: "expected START:COUNT (two numbers)")
        }
        guard count >= slotSize, count % slotSize == 0 else {
            throw ParseError(spec: spec, reason: "COUNT must be a multiple of \(slotSize) (one jail's ids)")
        }
        guard start >= slotSize, UInt64(start) + UInt64(count) <= UInt64(UInt32.max) else {
            throw ParseError(spec: spec, reason: "the pool must lie between \(slotSize) and \(UInt32.max)")
        }
        return UserRangePool(start: start, count: count)
    }

    /// Whether the pool shares an id with `span`.
    public func overlaps(_ span: ClosedRange<UInt64>) -> Bool {
        (UInt64(start)...(UInt64(start) + UInt64(count) - 1)).overlaps(span)
    }
}

/// The ids useradd hands out as subordinate ids (to every new account, when /etc/subuid
/// exists): SUB_UID_MIN–SUB_UID_MAX and SUB_GID_MIN–SUB_GID_MAX of /etc/login.defs, with
/// shadow's defaults (100000–600100000) for a missing or unreadable value.
public struct SubordinateSpan: Equatable, Sendable {
    public static let defaultMin: UInt64 = 100_000
    public static let defaultMax: UInt64 = 600_100_000
    public var uids: ClosedRange<UInt64>
    public var gids: ClosedRange<UInt64>

    public static func parse(loginDefs text: String) -> SubordinateSpan {
        // On bytes, with no collection of its own: splitting the 12 KB of Debian's login.defs by
        // Character cost a millisecond, and by byte slices (their array and a dictionary, each
        // a first use of a generic type the runtime looks up) a tenth; each start reads it.
        var uidMin, uidMax, gidMin, gidMax: UInt64?
        var text = text
        text.withUTF8 { bytes in
            ByteLines.forEach(in: bytes) { start, end in
                guard let (key, value) = setting(in: bytes, start, end) else { return }
                switch key {
                case "SUB_UID_MIN": uidMin = value
                case "SUB_UID_MAX": uidMax = value
                case "SUB_GID_MIN": gidMin = value
                case "SUB_GID_MAX": gidMax = value
                default: return
                }
            }
        }
        func span(_ low: UInt64?, _ high: UInt64?) -> ClosedRange<UInt64> {
            let low = low ?? defaultMin, high = high ?? defaultMax
            return low <= high ? low...high : low...low
        }
        return SubordinateSpan(uids: span(uidMin, uidMax), gids: span(gidMin, gidMax))
    }

    /// The line `start..<end` as a setting: its first word when it starts with SUB_, and the
    /// number its second word is; nil for any other line, or a second word that is no number.
    static func setting(in bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> (key: String, value: UInt64)? {
        let blank: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        guard end - start > 4, bytes[start] == UInt8(ascii: "S"), bytes[start + 1] == UInt8(ascii: "U"),
              bytes[start + 2] == UInt8(ascii: "B"), bytes[start + 3] == UInt8(ascii: "_") else { return nil }
        var keyEnd = start
        while keyEnd < end && !blank(bytes[keyEnd]) { keyEnd += 1 }
        var valueStart = keyEnd
        while valueStart < end && blank(bytes[valueStart]) { valueStart += 1 }
        var valueEnd = valueStart
        while valueEnd < end && !blank(bytes[valueEnd]) { valueEnd += 1 }
        guard let value = UInt64(ByteLines.text(bytes, valueStart, valueEnd)) else { return nil }
        return (ByteLines.text(bytes, start, keyEnd), value)
    }

    /// The one line that refuses `pool`, or nil if it lies outside both spans.
    public func refusal(of pool: UserRangePool) -> String? {
        func line(_ kind: String, _ span: ClosedRange<UInt64>) -> String {
            "the user-namespace pool \(pool) overlaps the subordinate ids useradd hands out "
                + "(SUB_\(kind)_MIN-SUB_\(kind)_MAX in /etc/login.defs: \(span.lowerBound)-\(span.upperBound)): "
                + "choose a --userns-pool outside them (the default is \(UserRangePool.standard))"
        }
        if pool.overlaps(uids) { return line("UID", uids) }
        if pool.overlaps(gids) { return line("GID", gids) }
        return nil
    }
}
