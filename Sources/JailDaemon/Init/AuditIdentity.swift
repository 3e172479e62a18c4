import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The audit login uid of everything in the jail, as pam_loginuid sets it for a login: the
/// jail user's. While a process's loginuid is unset, the kernel lets it set it once without
/// any privilege, so root inside could otherwise make it 0 and forge host audit records.
/// init writes it before it forks anything; every helper, session and boot program inherits
/// it, and changing it later needs CAP_AUDIT_CONTROL, which is not in the bounding set.
///
/// The number is read in the user namespace of the writer (/proc's rules), so with a user
/// namespace the jail user's uid inside becomes the host uid it maps to.
enum AuditIdentity {
    static let path = "/proc/self/loginuid"
    static let unset = "4294967295"

    static func setLoginUID(_ uid: UInt32) throws(JailError) {
        let opened: FileDescriptor?
        do { opened = try openFileIfPresent(path, O_RDWR) } catch { throw .system(error) }
        // Without audit support in the kernel there is no loginuid to forge.
        guard let file = opened else { return }
        defer { file.closeQuietly() }
        do { try writeKernelFile(file, "\(uid)", path: path) } catch {
            // Already set (jaild started from a login) and not ours to change (a user namespace,
            // or loginuid_immutable): the jail keeps that identity, and cannot change it either.
            if current() != unset { return }
            throw .system(error)
        }
    }

    /// In the supervisor, just before the clone: its own loginuid becomes the jail user's, so
    /// init inherits it — init in a user namespace could not change one that jaild inherited
    /// from an operator's login session (nor even read it: unmapped, it shows as unset).
    /// Host root may (CAP_AUDIT_CONTROL); returns the value to put back after the clone.
    static func handOver(_ uid: UInt32) -> String? {
        // Not handed over (a kernel without audit, no CAP_AUDIT_CONTROL): init then sets it
        // itself, or keeps one that was set and says nothing can change it (setLoginUID).
        guard geteuid() == 0, let previous = try? readText(path) else { return nil }
        guard (try? writeKernelFile(path, "\(uid)")) != nil else { return nil }
        return String(previous.trimmingWhitespace())
    }

    /// The supervisor's own loginuid again, after the clone.
    static func putBack(_ previous: String?) {
        guard let previous else { return }
        // The supervisor serves this one jail: if it keeps the jail user's loginuid, its own
        // records name that user, nobody else's.
        try? writeKernelFile(path, previous)
    }

    static func current() -> String {
        readNumber(path).map { String($0) } ?? unset
    }
}
