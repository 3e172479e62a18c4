/// What init sends a spare session helper with a client's connection (SCM_RIGHTS, one
/// SOCK_SEQPACKET message): the session's number and whether the peer is root on the host.
/// init writes it (Init+Spare.swift), the spare reads it (SessionHelper+Spare.swift) and
/// answers `acknowledgement` (one byte) before it reads anything of the client's; it closes its
/// end once the session's program runs.
struct SpareHandOff: Equatable {
    var id: Int
    var hostRoot: Bool

    /// The spare's one-byte answer: it holds the connection now.
    static let acknowledgement = UInt8(ascii: "A")

    var bytes: [UInt8] {
        withUnsafeBytes(of: UInt64(id).littleEndian) { Array($0) } + [hostRoot ? 1 : 0]
    }

    init(id: Int, hostRoot: Bool) {
        self.id = id
        self.hostRoot = hostRoot
    }

    /// nil for anything but the 9 bytes init sends.
    init?(bytes: [UInt8]) {
        guard bytes.count == 9, bytes[8] <= 1 else { return nil }
        let number = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard number > 0, number <= UInt64(Int.max) else { return nil }
        id = Int(number)
        hostRoot = bytes[8] == 1
    }
}
