import JailSystem

/// The text of one of the host's account files (passwd, shadow, group, gshadow: lines of
/// colon-separated fields, the name first) as bytes, looked up and edited without splitting it
/// into Strings: with a line per tenant, parsing all of /etc/passwd into entries cost
/// milliseconds at 2,000 tenants, and `jaild create` needs only a few lookups of it.
/// Comments and lines without the fields asked for are never matched, as glibc skips them.
struct AccountText: Equatable {
    var bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }
    init(_ text: String) { self.bytes = Array(text.utf8) }

    static let colon = UInt8(ascii: ":")
    static let comma = UInt8(ascii: ",")
    static let newline = UInt8(ascii: "\n")

    /// Field `index` (0: the name) of `line`; nil when the line has fewer fields.
    static func field(_ index: Int, of line: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        var start = line.startIndex
        var current = 0
        var i = line.startIndex
        while i < line.endIndex {
            if line[i] == colon {
                if current == index { return line[start..<i] }
                current += 1
                start = i + 1
            }
            i += 1
        }
        return current == index ? line[start..<line.endIndex] : nil
    }

    static func isComment(_ line: ArraySlice<UInt8>) -> Bool { line.first == UInt8(ascii: "#") }

    /// The first line whose field `index` is `value` (0: the name; 2: passwd's uid, group's
    /// gid; 3: passwd's gid; 6: passwd's shell). One pass over the bytes, nothing allocated:
    /// `jaild create` asks a handful of these of files with a line per tenant.
    func line(whereField index: Int, is value: String) -> ArraySlice<UInt8>? {
        var value = value
        return value.withUTF8 { wanted -> ArraySlice<UInt8>? in
            bytes.withUnsafeBufferPointer { text -> ArraySlice<UInt8>? in
                var start = 0
                while start < text.count {
                    var end = start
                    while end < text.count && text[end] != Self.newline { end += 1 }
                    if text[start] != UInt8(ascii: "#"), Self.field(index, in: text, start, end, equals: wanted) {
                        return bytes[start..<end]
                    }
                    start = end + 1
                }
                return nil
            }
        }
    }

    /// Whether field `index` of the line text[start..<end] is `wanted`.
    static func field(_ index: Int, in text: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int,
                      equals wanted: UnsafeBufferPointer<UInt8>) -> Bool {
        var fieldStart = start
        var current = 0
        var i = start
        while current < index {
            while i < end && text[i] != colon { i += 1 }
            guard i < end else { return false }
            current += 1
            i += 1
            fieldStart = i
        }
        var fieldEnd = fieldStart
        while fieldEnd < end && text[fieldEnd] != colon { fieldEnd += 1 }
        guard fieldEnd - fieldStart == wanted.count else { return false }
        for k in 0..<wanted.count where text[fieldStart + k] != wanted[k] { return false }
        return true
    }

    func line(named name: String) -> ArraySlice<UInt8>? { line(whereField: 0, is: name) }

    /// `jaild create NAME` comments the account it makes "jail NAME": the names of the jails
    /// whose host account it made, from one pass over passwd.
    var namesOfCreatedJails: Set<String> {
        var names: Set<String> = []
        let prefix = Array("jail ".utf8)
        forEachLine { line, _ in
            guard !Self.isComment(line), let name = Self.field(0, of: line), let comment = Self.field(4, of: line),
                  comment.count == prefix.count + name.count, comment.starts(with: prefix),
                  comment.dropFirst(prefix.count).elementsEqual(name) else { return }
            names.insert(String(decoding: name, as: UTF8.self))
        }
        return names
    }

    /// The jail whose host account `jaild create` made with `uid` (comment "jail NAME"), if any.
    func createdJail(withUID uid: UInt32) -> String? {
        guard let line = line(whereField: 2, is: "\(uid)"), let name = Self.field(0, of: line),
              let comment = Self.field(4, of: line) else { return nil }
        let wanted = Array("jail ".utf8) + Array(name)
        return comment.elementsEqual(wanted) ? String(decoding: name, as: UTF8.self) : nil
    }

    func contains(name: String) -> Bool { line(named: name) != nil }

    /// passwd(5)'s entry of `line`, as PasswdEntry reads it.
    static func passwdEntry(_ line: ArraySlice<UInt8>?) -> PasswdEntry? {
        line.flatMap { PasswdEntry.parseAll(String(decoding: $0, as: UTF8.self)).first }
    }

    static func groupEntry(_ line: ArraySlice<UInt8>?) -> GroupEntry? {
        line.flatMap { GroupEntry.parseAll(String(decoding: $0, as: UTF8.self)).first }
    }

    /// `line` added at the end (after the newline the text may lack).
    func appending(_ line: String) -> [UInt8] {
        var result = bytes
        if let last = result.last, last != Self.newline { result.append(Self.newline) }
        result += Array(line.utf8)
        result.append(Self.newline)
        return result
    }

    /// The text with `member` added to the comma-separated list in field `index` of the line
    /// named `group` (3: group(5)'s members and gshadow(5)'s members); nil when no line has
    /// that name. A member listed already leaves the text as it was.
    func addingMember(_ member: String, toGroup group: String, field index: Int) -> [UInt8]? {
        let groupName = Array(group.utf8)
        let memberName = Array(member.utf8)
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count + memberName.count + 1)
        var found = false
        forEachLine { line, ending in
            guard !found, !Self.isComment(line), Self.field(0, of: line)?.elementsEqual(groupName) == true,
                  let list = Self.field(index, of: line) else {
                result += line
                result += ending
                return
            }
            found = true
            let members = list.split(separator: Self.comma)
            result += line[line.startIndex..<list.endIndex]
            if !members.contains(where: { $0.elementsEqual(memberName) }) {
                if !members.isEmpty { result.append(Self.comma) }
                result += memberName
            }
            result += line[list.endIndex..<line.endIndex]
            result += ending
        }
        return found ? result : nil
    }

    /// The text without the lines named `name` (all of them: a duplicate left by hand goes
    /// too; with `keepingLines`, they stay) and, when `memberFields` is given, with `name` taken
    /// out of those comma-separated fields of every line (group(5): 3; gshadow(5): 2, the
    /// administrators, and 3).
    func removing(_ name: String, keepingLines: Bool = false, memberFields: [Int] = []) -> [UInt8] {
        let wanted = Array(name.utf8)
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count)
        forEachLine { line, ending in
            if Self.isComment(line) {
                result += line
                result += ending
                return
            }
            if !keepingLines, Self.field(0, of: line)?.elementsEqual(wanted) == true { return }
            var kept = line
            for index in memberFields {
                guard let list = Self.field(index, of: kept),
                      list.split(separator: Self.comma).contains(where: { $0.elementsEqual(wanted) }) else { continue }
                let others = list.split(separator: Self.comma).filter { !$0.elementsEqual(wanted) }
                var rebuilt = Array(kept[kept.startIndex..<list.startIndex])
                for (i, other) in others.enumerated() {
                    if i > 0 { rebuilt.append(Self.comma) }
                    rebuilt += other
                }
                rebuilt += kept[list.endIndex..<kept.endIndex]
                kept = rebuilt[...]
            }
            result += kept
            result += ending
        }
        return result
    }

    /// Every line with the newline that ends it (empty for a last line without one), so that
    /// an edit keeps every other byte of the file.
    func forEachLine(_ body: (ArraySlice<UInt8>, ArraySlice<UInt8>) -> Void) {
        var start = bytes.startIndex
        while start < bytes.endIndex {
            let end = bytes[start...].firstIndex(of: Self.newline) ?? bytes.endIndex
            let ending = end < bytes.endIndex ? bytes[end..<(end + 1)] : bytes[end..<end]
            body(bytes[start..<end], ending)
            start = end < bytes.endIndex ? end + 1 : end
        }
    }
}
