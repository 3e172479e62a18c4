/// Lines and fields of a kernel or account file, walked on its bytes by index, for the files a
/// start reads (mountinfo, passwd, group, login.defs). No String per line and no collection of
/// slices: splitting by Character cost a start milliseconds, and each new generic type (an
/// array of slices, of ranges) a tenth of one, the Swift runtime's lookup of it (issue 36).
public enum ByteLines {
    /// Calls `body` with the bounds of each line of `bytes`, its newline left out; a last line
    /// without one is a line too.
    public static func forEach(in bytes: UnsafeBufferPointer<UInt8>, _ body: (_ start: Int, _ end: Int) -> Void) {
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            body(start, end)
            start = end + 1
        }
    }

    /// Calls `body` with the bounds of each field of the line `start..<end` between
    /// `separator`s, empty fields included.
    public static func forEachField(in bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, separator: UInt8,
                                    _ body: (_ start: Int, _ end: Int) -> Void) {
        var fieldStart = start
        var index = start
        while index <= end {
            if index == end || bytes[index] == separator {
                body(fieldStart, index)
                fieldStart = index + 1
            }
            index += 1
        }
    }

    /// The bytes `start..<end` as text.
    public static func text(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
    }
}
