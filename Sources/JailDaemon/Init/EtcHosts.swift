import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The jail's host name in its /etc/hosts, so `hostname -f`, `getent hosts NAME` and sudo
/// resolve it (Debian's minbase writes no line for it; sudo then says "unable to resolve
/// host"). `jaild create --hostname` writes the line into the new jail's file; at each start
/// init adds it when the file lacks the name — as Debian's installer does, `127.0.1.1 NAME`
/// (and the short name of a dotted one) — and logs the line it added. Added, not only warned
/// about: the name is the operator's option, the file the tenant's, and without the line the
/// option does not work; a line appended and logged changes nothing else the tenant wrote.
/// Never through a symlink, never a file that is not regular, never more than 1 MiB read.
enum EtcHosts {
    static let path = "/etc/hosts"
    static let maxBytes = 1 << 20

    /// Whether `text` (an /etc/hosts) gives an address for `name`.
    static func resolves(_ text: String, name: String) -> Bool {
        for line in text.split(separator: "\n") {
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.dropFirst().contains(where: { $0.lowercased() == name.lowercased() }) { return true }
        }
        return false
    }

    /// The line for `name`: `127.0.1.1 wl` or `127.0.1.1 wl.example.org wl`.
    static func line(for name: String) -> String {
        let short = name.split(separator: ".").first.map(String.init) ?? name
        return short == name ? "127.0.1.1\t\(name)\n" : "127.0.1.1\t\(name) \(short)\n"
    }

    /// A fresh file when the base has none.
    static func fresh(for name: String) -> String {
        "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n" + line(for: name)
    }

    /// `text` with the line for `name` appended (nil: it resolves already).
    static func adding(_ name: String, to text: String) -> String? {
        if resolves(text, name: name) { return nil }
        return text + (text.isEmpty || text.hasSuffix("\n") ? "" : "\n") + line(for: name)
    }

    /// In init, after pivot_root, as root inside and before any program runs: adds the line
    /// if needed. Returns what to log (nil: nothing done). A file it cannot safely change (a
    /// symlink, not regular, read-only root) is left alone with a warning.
    static func ensure(_ name: String) -> (warning: Bool, message: String)? {
        let opened: FileDescriptor?
        do { opened = try openFileIfPresent(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK) } catch {
            return (true, "the jail's /etc/hosts cannot be opened (\(error.errno)): '\(name)' may not resolve inside")
        }
        guard let file = opened else {
            do throws(SystemError) {
                if try writeFile(path, text: fresh(for: name), mode: 0o644, .exclusive) {
                    return (false, "the jail had no /etc/hosts: wrote one with '\(line(for: name).dropLast())'")
                }
                throw SystemError("open", path: path, errno: .fileExists)
            } catch {
                return (true, "the jail has no /etc/hosts and it cannot be written (\(error.errno)): "
                    + "'\(name)' does not resolve inside")
            }
        }
        guard let info = try? file.fileStatus(), (info.st_mode & S_IFMT) == S_IFREG, info.st_size < maxBytes else {
            file.closeQuietly()
            return (true, "the jail's /etc/hosts is not a regular file under 1 MiB: '\(name)' not added")
        }
        let bytes: [UInt8]
        do { bytes = try readAll(file, limit: maxBytes) } catch {
            file.closeQuietly()
            return (true, "the jail's /etc/hosts cannot be read: '\(name)' not added")
        }
        guard let updated = adding(name, to: String(decoding: bytes, as: UTF8.self)) else {
            file.closeQuietly()
            return nil
        }
        // Read to its end, the file's offset is where the line goes.
        do throws(SystemError) {
            do { try file.writeFully(Array(updated.utf8.dropFirst(bytes.count))) } catch {
                file.closeQuietly()
                throw error
            }
            try closeAfterWriting(file, path: path)
        } catch {
            return (true, "the jail's /etc/hosts lacks '\(name)' and cannot be written (\(error.errno)): "
                + "add '\(line(for: name).dropLast())' to it")
        }
        return (false, "added '\(line(for: name).dropLast())' to the jail's /etc/hosts (--hostname \(name) had no address there)")
    }
}
