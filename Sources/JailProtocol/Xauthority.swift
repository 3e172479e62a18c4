/// The Xauthority file format (libXau): a sequence of entries, each a big-endian u16 family
/// and four u16-length-prefixed byte strings — address, display number, protocol name, data.
/// Read by the client (the host account's cookie for its DISPLAY, as sshd's xauth wrote it)
/// and written by the session helper (the same cookie, for the jail's hostname). Pure.
public enum Xauthority {
    public struct Entry: Equatable, Sendable {
        public var family: UInt16
        public var address: [UInt8]
        public var number: String
        public var name: String
        public var data: [UInt8]

        public init(family: UInt16, address: [UInt8], number: String, name: String, data: [UInt8]) {
            self.family = family
            self.address = address
            self.number = number
            self.name = name
            self.data = data
        }
    }

    /// FamilyLocal: a display of this host, named by its hostname (what X clients look up
    /// for `unix:N` and for `localhost:N`). FamilyWild matches any address.
    public static let familyLocal: UInt16 = 256
    public static let familyWild: UInt16 = 0xffff

    /// Every complete entry; a truncated tail is ignored (libXau stops there too).
    public static func parse(_ bytes: [UInt8]) -> [Entry] {
        var entries: [Entry] = []
        var i = 0
        func u16() -> Int? {
            guard i + 2 <= bytes.count else { return nil }
            defer { i += 2 }
            return Int(bytes[i]) << 8 | Int(bytes[i + 1])
        }
        func field() -> [UInt8]? {
            guard let n = u16(), i + n <= bytes.count else { return nil }
            defer { i += n }
            return Array(bytes[i..<(i + n)])
        }
        while let family = u16(), let address = field(), let number = field(), let name = field(), let data = field() {
            entries.append(Entry(family: UInt16(family), address: address, number: String(decoding: number, as: UTF8.self),
                                 name: String(decoding: name, as: UTF8.self), data: data))
        }
        return entries
    }

    public static func encode(_ entries: [Entry]) -> [UInt8] {
        var out: [UInt8] = []
        func u16(_ v: Int) { out += [UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
        func field<C: Collection<UInt8>>(_ f: C) {
            let bounded = f.prefix(0xffff)
            u16(bounded.count)
            out += bounded
        }
        for e in entries {
            u16(Int(e.family))
            field(e.address)
            field(Array(e.number.utf8))
            field(Array(e.name.utf8))
            field(e.data)
        }
        return out
    }

    /// The cookie for display `number` on this host (`hostname`): an exact local entry first,
    /// then a wildcard, MIT-MAGIC-COOKIE-1 preferred (as xauth and libXau choose).
    public static func cookie(in entries: [Entry], number: String, hostname: [UInt8]) -> Entry? {
        let candidates = entries.filter { $0.number == number && !$0.data.isEmpty }
        let ranked = candidates.filter { $0.family == familyLocal && $0.address == hostname }
            + candidates.filter { $0.family == familyWild }
        return ranked.first { $0.name == "MIT-MAGIC-COOKIE-1" } ?? ranked.first
    }
}
