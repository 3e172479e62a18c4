import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `writeFile(.atomic)` whose new file is on disk (fsync) before it is renamed over `path`:
/// for a host file such as /etc/shells, which a crash must leave old or new, never empty.
/// A failure leaves no temporary behind.
public func writeFileDurably(_ path: String, _ bytes: [UInt8], mode: mode_t, temporary: String) throws(SystemError) {
    do {
        try writeFile(temporary, bytes, mode: mode, .replace)
        try syncFile(temporary)
        try renameFile(temporary, to: path)
    } catch {
        discardFile(temporary)
        throw error
    }
}
