#if canImport(Glibc)
import Glibc
#endif

// IP addresses as text and as bytes, in the forms inet_pton(3) and inet_ntop(3) know.

/// The 4 or 16 bytes of "192.0.2.10" or "2001:db8::10"; nil for anything else.
public func ipAddressBytes(_ text: String) -> [UInt8]? {
    var four = in_addr()
    if inet_pton(AF_INET, text, &four) == 1 { return withUnsafeBytes(of: &four) { Array($0) } }
    var sixteen = in6_addr()
    if inet_pton(AF_INET6, text, &sixteen) == 1 { return withUnsafeBytes(of: &sixteen) { Array($0) } }
    return nil
}

/// The text of 4 (IPv4) or 16 (IPv6) address bytes.
public func ipAddressText(_ bytes: [UInt8]) -> String {
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    _ = bytes.withUnsafeBytes { inet_ntop(bytes.count == 4 ? AF_INET : AF_INET6, $0.baseAddress, &text, socklen_t(text.count)) }
    return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
