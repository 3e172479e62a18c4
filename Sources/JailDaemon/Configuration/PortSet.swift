/// `--ports tcp:25,tcp:8000-8099,udp:53`: the ports a jail may bind on the shared network.
public struct PortSet: Equatable, Sendable, CustomStringConvertible {
    public struct Range: Equatable, Sendable {
        public let proto: String   // "tcp" or "udp"
        public let low: UInt16
        public let high: UInt16

        public var protocolNumber: Int32 { proto == "tcp" ? 6 : 17 }
        func overlaps(_ other: Range) -> Bool { proto == other.proto && low <= other.high && other.low <= high }
    }

    public let ranges: [Range]

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let spec: String
        public let reason: String
        public var description: String { "--ports '\(spec)': \(reason)" }
    }

    public static func parse(_ spec: String) throws(ParseError) -> PortSet {
        var ranges: [Range] = []
        for item in spec.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == "tcp" || parts[0] == "udp" else {
                throw ParseError(spec: spec, reason: "'\(item)' is not tcp:PORT[-PORT] or udp:PORT[-PORT]")
            }
            let bounds = parts[1].split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = UInt16(bounds[0]), let high = UInt16(bounds.last!),
                  low >= 1, low <= high else {
                throw ParseError(spec: spec, reason: "'\(item)' has no valid port or range (1-65535, low-high)")
            }
            ranges.append(Range(proto: String(parts[0]), low: low, high: high))
        }
        return PortSet(ranges: ranges)
    }

    public var description: String {
        ranges.map { "\($0.proto):\($0.low)" + ($0.low == $0.high ? "" : "-\($0.high)") }.joined(separator: ",")
    }

    /// The ports this set shares with `other`, for the overlap warning.
    public func overlap(with other: PortSet) -> [Range] {
        ranges.flatMap { mine in
            other.ranges.filter { mine.overlaps($0) }
                .map { Range(proto: mine.proto, low: max(mine.low, $0.low), high: min(mine.high, $0.high)) }
        }
    }
}
