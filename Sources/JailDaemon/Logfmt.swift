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

    /// The one rule for what a jail may not put on an operator's screen or into a host log:
    /// every path that shows jail-controlled text (logfmt values here, `printable` for log lines
    /// and table cells, `json` for `--json` output, the syslog relay's `#ooo`) asks this one
    /// function. Unsafe: C0 controls (escape sequences, a carriage return that hides a prefix, a
    /// newline that forges a line), DEL, C1 controls (U+009B is CSI on terminals that take 8-bit
    /// controls), the line and paragraph separators, the bidi embeddings, overrides, isolates and
    /// the Arabic letter mark (U+202E shows `gpj.exe` as `exe.jpg`), zero-width characters and
    /// the BOM (text that looks the same but is not).
    public static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if v < 0x20 || (0x7f...0x9f).contains(v) { return true }
        if v == 0x2028 || v == 0x2029 || (0x202a...0x202e).contains(v) || (0x2066...0x2069).contains(v) { return true }
        if (0x200b...0x200f).contains(v) || v == 0xfeff || v == 0x061c { return true }
        return false
    }

    /// `\xHH` below U+0100, else `\u{H}`: the escape `fields` reads back.
    static func escaped(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16)
        if scalar.value < 0x100 { return "\\x" + (hex.count < 2 ? "0" : "") + hex }
        return "\\u{" + hex + "}"
    }
}

/// The other forms of the same escaper, for the paths that are not logfmt.
extension Logfmt {
    /// Free text as it goes into a log line or a table cell: each unsafe character as `\xHH` or
    /// `\u{H}`, everything else as it is (so a line never moves the cursor, never splits).
    public static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isUnsafe) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if isUnsafe(scalar) { out += escaped(scalar) } else { out.unicodeScalars.append(scalar) }
        }
        return out
    }

    /// Bytes a jail wrote (its boot output): bad UTF-8 becomes U+FFFD (a lone 0x9B byte is CSI
    /// to a terminal in an 8-bit locale), then `printable`.
    public static func printable(_ bytes: some Collection<UInt8>) -> String {
        // Printable ASCII, the common case, is valid UTF-8 with nothing to escape.
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) { return String(decoding: bytes, as: UTF8.self) }
        return printable(String(decoding: bytes, as: UTF8.self))
    }

    /// A JSON string literal: `"` and `\\` escaped, and every unsafe character as `\uXXXX`
    /// (`\u009b`, `\u202e`; all of them are in the BMP), so `--json` output carries the exact
    /// text to a parser and nothing raw to a terminal that shows it.
    public static func json(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where isUnsafe(scalar):
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
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
