/// Where the host ids of root-started jails come from: slots of 65,536 ids, one slot per jail.
/// `--userns-pool START:COUNT` (COUNT ids, a multiple of 65,536). The default, 2^20 up to
/// 2^20 + 2^28, lies above every id that useradd hands out to accounts (below 60,000) and
/// well below 2^31, where some programs take ids for negative numbers; /etc/subuid and
/// /etc/subgid ranges inside it are skipped, as are ids of existing accounts.
public struct UserRangePool: Equatable, Sendable, CustomStringConvertible {
    public static let slotSize: UInt32 = 65536
    public static let standard = UserRangePool(start: 1 << 20, count: 1 << 28)

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
}
