/// One message from the jail's /dev/log, rewritten for the host's: pure, so it is unit-tested.
///
/// Whatever the sender wrote as its time stamp, host name and tag, the host sees
/// `<PRI>jail/NAME: TAG: MESSAGE`: the identity (the syslog tag the host's daemon files it
/// under) is the jail's, set here, and everything the jail wrote comes after it. So a program
/// inside cannot pose as the host's sshd, as another jail, or as another host. Both formats
/// that reach a local /dev/log are understood: RFC 3164 (`<PRI>Mmm dd hh:mm:ss TAG: MSG`, what
/// glibc's and busybox's syslog(3) and util-linux `logger` send) and RFC 5424
/// (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`); the claimed host name is dropped.
/// Control characters, C1 and bidi overrides become `#ooo` per byte (as rsyslog writes them),
/// so a message stays one line and shows what was sent;
/// the kernel facility is not the jail's to use and becomes user.
public enum SyslogMessage {
    /// A safe size for every host daemon (rsyslog's default maximum is 8 KiB).
    public static let defaultLimit = 8192

    public static func rewrite(_ raw: ArraySlice<UInt8>, jail: String, receivedBytes: Int? = nil,
                               limit: Int = defaultLimit) -> [UInt8] {
        var rest = raw
        var priority = 13  // user.notice, as syslog(3) defaults
        if let (value, after) = parsePriority(rest) {
            priority = value
            rest = after
        }
        if priority >> 3 == 0 { priority = 8 | (priority & 7) }
        var tag: ArraySlice<UInt8>?
        if rest.starts(with: Array("1 ".utf8)) {
            // RFC 5424: VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, then SD and MSG.
            var fields: [ArraySlice<UInt8>] = []
            var cursor = rest
            for _ in 0..<6 {
                guard let space = cursor.firstIndex(of: 32) else { break }
                fields.append(cursor[cursor.startIndex..<space])
                cursor = cursor[(space + 1)...]
            }
            if fields.count == 6 {
                let app = fields[3], procid = fields[4]
                if !app.elementsEqual(Array("-".utf8)) {
                    tag = procid.elementsEqual(Array("-".utf8)) ? app : app + Array("[".utf8) + procid + Array("]".utf8)
                }
                if cursor.starts(with: Array("- ".utf8)) { cursor = cursor.dropFirst(2) } else if cursor.elementsEqual(Array("-".utf8)) { cursor = cursor.dropFirst() }
                if cursor.starts(with: [0xef, 0xbb, 0xbf]) { cursor = cursor.dropFirst(3) }
                rest = cursor
            }
        } else if isTimestamp(rest) {
            rest = rest.dropFirst(16)
        }
        while let last = rest.last, last == 10 || last == 0 || last == 13 { rest = rest.dropLast() }

        var out = Array("<\(priority)>jail/\(jail): ".utf8)
        if let tag { out += sanitize(tag.prefix(48), spaces: false) + Array(": ".utf8) }
        out += sanitize(rest, spaces: true)
        let original = receivedBytes ?? raw.count
        if out.count > limit || original > raw.count {
            let marker = Array(" [truncated from \(original) bytes]".utf8)
            out = cut(out, to: limit - marker.count) + marker
        }
        return out
    }

    /// `<N>` with 1 to 3 digits and N at most 191; nil when the message has none.
    static func parsePriority(_ bytes: ArraySlice<UInt8>) -> (Int, ArraySlice<UInt8>)? {
        guard bytes.first == UInt8(ascii: "<") else { return nil }
        var value = 0
        var digits = 0
        var index = bytes.index(after: bytes.startIndex)
        while index < bytes.endIndex, digits < 3, (48...57).contains(bytes[index]) {
            value = value * 10 + Int(bytes[index] - 48)
            digits += 1
            index += 1
        }
        guard digits > 0, index < bytes.endIndex, bytes[index] == UInt8(ascii: ">"), value <= 191 else { return nil }
        return (value, bytes[(index + 1)...])
    }

    /// `Mmm dd hh:mm:ss ` (RFC 3164), 16 bytes.
    static func isTimestamp(_ b: ArraySlice<UInt8>) -> Bool {
        guard b.count >= 16 else { return false }
        let s = Array(b.prefix(16))
        func letter(_ c: UInt8) -> Bool { (65...90).contains(c) || (97...122).contains(c) }
        func digit(_ c: UInt8) -> Bool { (48...57).contains(c) }
        return letter(s[0]) && letter(s[1]) && letter(s[2]) && s[3] == 32 && (digit(s[4]) || s[4] == 32) && digit(s[5])
            && s[6] == 32 && digit(s[7]) && digit(s[8]) && s[9] == 58 && digit(s[10]) && digit(s[11]) && s[12] == 58
            && digit(s[13]) && digit(s[14]) && s[15] == 32
    }

    /// Every byte of an unsafe character (Logfmt.isUnsafe: C0 but the message's tabs, DEL, C1,
    /// bidi overrides, separators) as `#ooo`, rsyslog's form for control characters and, with
    /// `$Escape8BitCharactersOnReceive`, for 8-bit bytes: U+009B is `#302#233`, U+202E
    /// `#342#200#256`. A byte that is not part of valid UTF-8 is escaped the same way (a lone
    /// 0x9B is CSI to an 8-bit terminal), so the result is valid UTF-8 and nothing is lost. In
    /// a tag, spaces too.
    static func sanitize(_ bytes: ArraySlice<UInt8>, spaces: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        func octal(_ byte: UInt8) { out += [UInt8(ascii: "#"), 48 + (byte >> 6), 48 + ((byte >> 3) & 7), 48 + (byte & 7)] }
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            // Printable ASCII, most of every message, needs no decoding.
            if byte > 32 && byte < 127 || byte == 32 && spaces {
                out.append(byte)
                index += 1
                continue
            }
            var parser = Unicode.UTF8.ForwardParser()
            var iterator = bytes[index...].makeIterator()
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                let scalar = Unicode.UTF8.decode(encoded)
                let keep = scalar == "\t" ? spaces : scalar != " " && !Logfmt.isUnsafe(scalar)
                if keep { out += encoded } else { encoded.forEach(octal) }
                index += encoded.count
            case .error(let length):
                bytes[index..<(index + length)].forEach(octal)
                index += length
            case .emptyInput:
                return out
            }
        }
        return out
    }

    /// `bytes` cut to at most `limit`, never inside a UTF-8 sequence.
    static func cut(_ bytes: [UInt8], to limit: Int) -> [UInt8] {
        var end = max(0, min(limit, bytes.count))
        while end > 0 && end < bytes.count && bytes[end] & 0xc0 == 0x80 { end -= 1 }
        return Array(bytes[..<end])
    }
}
