import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// An IP address of the host (`--address`) or a jail's own loopback address (`--loopback`):
/// its bytes, 4 for IPv4 and 16 for IPv6, in network order.
public struct HostAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public var isIPv4: Bool { bytes.count == 4 }

    /// "192.0.2.10" or "2001:db8::10" (inet_pton's forms); nil for anything else.
    public static func parse(_ text: String) -> HostAddress? {
        ipAddressBytes(text).map { HostAddress(bytes: $0) }
    }

    public var description: String {
        ipAddressText(bytes)
    }

    /// The 16 bytes the owned-ports map keys it by: an IPv4 address as ::ffff:a.b.c.d, which
    /// is how the IPv6 hooks see an IPv4 address too.
    public var mapped: [UInt8] { isIPv4 ? Array(repeating: 0, count: 10) + [0xff, 0xff] + bytes : bytes }

    /// In 127.0.0.0/8.
    public var isLoopbackNetwork: Bool { isIPv4 && bytes[0] == 127 }

    /// The IPv4 address's bytes read as a uint32_t in memory, as the BPF programs compare them.
    var memoryWord: UInt32 { UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24 }

    /// The IPv4 address as a number (127.0.0.1 → 0x7f000001), for pools.
    var number: UInt32 { UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3]) }

    init(bytes: [UInt8]) { self.bytes = bytes }

    init(number: UInt32) {
        bytes = [UInt8(number >> 24), UInt8(truncatingIfNeeded: number >> 16), UInt8(truncatingIfNeeded: number >> 8),
                 UInt8(truncatingIfNeeded: number)]
    }

    /// Why this address cannot be a jail's loopback address, or nil: it must be in 127.0.0.0/8,
    /// and neither 127.0.0.1 (the host's own, what the jail's "127.0.0.1" is rewritten from)
    /// nor the network's first or last address.
    public var loopbackProblem: String? {
        guard isLoopbackNetwork else { return "\(self) is not in 127.0.0.0/8" }
        if self == HostAddress(number: 0x7f00_0001) { return "127.0.0.1 is the host's own loopback address" }
        if number == 0x7f00_0000 || number == 0x7fff_ffff { return "\(self) is not a host address of 127.0.0.0/8" }
        return nil
    }
}

/// `--loopback-pool 127.77.0.0/16`: where jaild chooses a jail's loopback address from.
public struct LoopbackPool: Equatable, Sendable, CustomStringConvertible {
    public let first: UInt32
    public let count: UInt32

    public static let standard = LoopbackPool(first: 0x7f4d_0001, count: 65534)  // 127.77.0.1-127.77.255.254

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let spec: String
        public var description: String { "--loopback-pool '\(spec)' is not an IPv4 network in 127.0.0.0/8 like 127.77.0.0/16 (prefix 8-30)" }
    }

    public static func parse(_ spec: String) throws(ParseError) -> LoopbackPool {
        let parts = spec.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = HostAddress.parse(String(parts[0])), address.isLoopbackNetwork,
              let prefix = UInt32(parts[1]), (8...30).contains(prefix) else { throw ParseError(spec: spec) }
        let size = UInt32(1) << (32 - prefix)
        let network = address.number & ~(size - 1)
        // Without the network's first and last address, and without 127.0.0.0 and 127.0.0.1.
        let first = max(network + 1, 0x7f00_0002)
        let last = network + size - 2
        guard first <= last else { throw ParseError(spec: spec) }
        return LoopbackPool(first: first, count: last - first + 1)
    }

    public var description: String { "\(HostAddress(number: first))-\(HostAddress(number: first + count - 1))" }

    public var addresses: some Sequence<HostAddress> { (0..<count).lazy.map { HostAddress(number: first + $0) } }
}
