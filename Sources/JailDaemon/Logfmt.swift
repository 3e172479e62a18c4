/// logfmt: `event key=value key="quoted value"`, one line, for the session records in jaild's
/// log. Values come from the jail (commands, user names, SSH_CONNECTION), so the encoder is
/// hostile-input safe: the result never holds a newline, a carriage return, an escape or any
/// other control character (C0, DEL, C1), nor a Unicode line/paragraph separator or a bidi
/// override that could make a terminal or log viewer show something else than was logged.
/// A value that needs it is quoted, with `\"`, `\\`, `\n`, `\r`, `\t` and `\xHH` / `\u{H}`
/// escapes. Pure, so it is unit-tested with hostile strings.
public enum Logfmt {
    /// `event` then each field; keys are reduced to `[A-Za-z0-9_]` (they come from the code).
    public static func line(_ event: String, _ fields: [(String, String)]) -> String {
        var out = escapeBare(event)
        for (key, value) in fields {
            out += " "
            out += String(key.unicodeScalars.filter { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
                .map(Character.init))
            out += "="
            out += quote(value)
        }
        return out
    }

    /// A value as it goes after `key=`: bare when it is safe and unambiguous, else quoted.
    public static func quote(_ value: String) -> String {
        if !value.isEmpty && value.unicodeScalars.allSatisfy(isBare) { return value }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where isUnsafe(scalar): out += escaped(scalar)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// At most `limit` UTF-8 bytes of `text`, cut at a character boundary, with `…` when cut.
    public static func truncated(_ text: String, bytes limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        var out = ""
        var used = 0
        for scalar in text.unicodeScalars {
            let size = String(scalar).utf8.count
            if used + size > limit { break }
            used += size
            out.unicodeScalars.append(scalar)
        }
        return out + "…"
    }

    /// The event words (`session start`): code-given, plain ASCII words, escaped all the same.
    static func escapeBare(_ text: String) -> String {
        text.unicodeScalars.allSatisfy { isBare($0) || $0 == " " } ? text : quote(text)
    }

    static func isBare(_ scalar: Unicode.Scalar) -> Bool {
        scalar.isASCII && scalar.value > 0x20 && scalar.value < 0x7f && scalar != "\"" && scalar != "=" && scalar != "\\"
    }

    /// Characters that must never reach a log line as they are.
    static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if v < 0x20 || (0x7f...0x9f).contains(v) { return true }
        // Line/paragraph separators, bidi embeddings, overrides and isolates, zero-width and BOM.
        if v == 0x2028 || v == 0x2029 || (0x202a...0x202e).contains(v) || (0x2066...0x2069).contains(v) { return true }
        if (0x200b...0x200f).contains(v) || v == 0xfeff || v == 0x061c { return true }
        return false
    }

    static func escaped(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16)
        if scalar.value < 0x100 { return "\\x" + (hex.count < 2 ? "0" : "") + hex }
        return "\\u{" + hex + "}"
    }
}

extension Logfmt {
    /// The fields of one line written by `line` (the event words are skipped): what
    /// `jaild sessions` reads back from a session's record. Unknown escapes stay as they are.
    public static func fields(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        let s = Array(text.unicodeScalars)
        var i = 0
        while i < s.count {
            while i < s.count && s[i] == " " { i += 1 }
            var key = ""
            while i < s.count && s[i] != "=" && s[i] != " " {
                key.unicodeScalars.append(s[i])
                i += 1
            }
            guard i < s.count, s[i] == "=" else { continue }
            i += 1
            var value = ""
            if i < s.count && s[i] == "\"" {
                i += 1
                while i < s.count && s[i] != "\"" {
                    if s[i] == "\\" && i + 1 < s.count {
                        i += 1
                        switch s[i] {
                        case "n": value += "\n"
                        case "r": value += "\r"
                        case "t": value += "\t"
                        case "x" where i + 2 < s.count:
                            let hex = String(String.UnicodeScalarView(s[(i + 1)...(i + 2)]))
                            if let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) { value.unicodeScalars.append(scalar) }
                            i += 2
                        case "u" where i + 1 < s.count && s[i + 1] == "{":
                            var j = i + 2
                            var hex = ""
                            while j < s.count && s[j] != "}" && hex.count < 8 {
                                hex.unicodeScalars.append(s[j])
                                j += 1
                            }
                            if let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) { value.unicodeScalars.append(scalar) }
                            i = j
                        default: value.unicodeScalars.append(s[i])
                        }
                    } else {
                        value.unicodeScalars.append(s[i])
                    }
                    i += 1
                }
                i += 1
            } else {
                while i < s.count && s[i] != " " {
                    value.unicodeScalars.append(s[i])
                    i += 1
                }
            }
            out[key] = value
        }
        return out
    }
}
