/// The PROXY protocol v2 header the service relay writes before a tenant's first byte
/// (haproxy's proxy-protocol.txt, section 2.2): what the host service learns from jaild and
/// the tenant cannot forge, since it is written by the relay on the host's side of the socket
/// before any byte the tenant sent. Pure: unit-tested byte for byte.
///
///     12 bytes  signature  \r\n\r\n\0\r\nQUIT\n
///      1 byte   0x21       version 2, command PROXY
///      1 byte   0x31       AF_UNIX, SOCK_STREAM
///      2 bytes  length of what follows, big-endian
///    216 bytes  source and destination address, 108 bytes each (sun_path, NUL-padded): the
///               caller's socket is unnamed (zeros), the destination is JPATH inside the jail
///      TLVs     type (1 byte), length (2 bytes, big-endian), value:
///               0xE0  the jail's name, UTF-8
///               0xE1  "uid=N pid=N": the caller, as the jail's namespaces see it (SO_PEERCRED)
///
/// 0xE0 to 0xEF are the spec's range for custom TLVs (PP2_TYPE_MIN_CUSTOM…MAX_CUSTOM).
public enum ProxyHeader {
    public static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    public static let versionProxy: UInt8 = 0x21
    public static let unixStream: UInt8 = 0x31
    public static let unixAddressBytes = 108
    public static let jailNameType: UInt8 = 0xE0
    public static let callerType: UInt8 = 0xE1

    public static func make(jail: String, uid: UInt32, pid: Int32, jailPath: String) -> [UInt8] {
        var body = [UInt8](repeating: 0, count: unixAddressBytes)
        var destination = Array(jailPath.utf8.prefix(unixAddressBytes - 1))
        destination += [UInt8](repeating: 0, count: unixAddressBytes - destination.count)
        body += destination
        body += tlv(jailNameType, Array(jail.utf8))
        body += tlv(callerType, Array("uid=\(uid) pid=\(pid)".utf8))
        return signature + [versionProxy, unixStream, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    static func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] {
        let value = value.prefix(0xFFFF)
        return [type, UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
    }
}
