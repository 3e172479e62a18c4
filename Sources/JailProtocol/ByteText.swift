/// argv and the environment are byte strings (docs/protocol.md): a file name may be Latin-1.
/// Where one must become text — a log line, a message — valid UTF-8 stays as it is and every
/// other byte is written `\xNN`, so nothing is lost silently and nothing traps.
public enum ByteText {
    public static func display<C: Collection<UInt8>>(_ bytes: C) -> String {
        let array = Array(bytes)
        var out = ""
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = array.makeIterator()
        var position = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                out.unicodeScalars.append(Unicode.UTF8.decode(encoded))
                position += encoded.count
            case .error(let length):
                for byte in array[position..<min(array.count, position + length)] { out += hex(byte) }
                position += length
            case .emptyInput:
                return out
            }
        }
    }

    static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return "\\x" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 15)])
    }
}
