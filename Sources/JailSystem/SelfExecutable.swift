import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// jaild's own file seen from a jail (CJail/selfexec.c): a root jaild runs from a read-only,
// detached bind mount of itself, so that /proc/PID/exe of any of its processes refuses writes.

/// Whether this process's executable is on a writable mount (statvfs of /proc/self/exe): false
/// on a read-only one, and when that cannot be told, where a remount could not be made either.
public func executableIsOnWritableMount() -> Bool {
    cj_executable_is_read_only() == 0
}

/// Maps this program's file again from a read-only detached mount of it, or of `image` (an
/// open copy of that file, `BuildIdentity.matches`), its written pages copied, and makes that
/// /proc/self/exe, without an exec. False when the kernel refused (PR_SET_MM): some mappings
/// may be the new ones already (equal content), and the caller re-executes instead
/// (`reexecFromReadOnlyMount`).
@discardableResult
public func remapFromReadOnlyMount(image: FileDescriptor?) -> Bool {
    cj_remap_read_only(image?.rawValue ?? -1) == 0
}

/// Re-executes this program, with its arguments and environment, from a read-only detached
/// bind mount of its own file or of `image` (needs CAP_SYS_ADMIN). Returns only on failure,
/// with it.
public func reexecFromReadOnlyMount(image: FileDescriptor?) -> SystemError {
    _ = cj_reexec_read_only(image?.rawValue ?? -1, CommandLine.unsafeArgv, environ)
    return SystemError.last("execve from a read-only mount", path: "/proc/self/exe")
}

/// The GNU build id of the running program and where it lies in the program's file: what
/// tells a copy of that file (`ExecutableCache`) for the same build.
public struct BuildIdentity: Equatable, Sendable {
    public let bytes: [UInt8]
    public let fileOffset: Int64

    public init(bytes: [UInt8], fileOffset: Int64) {
        self.bytes = bytes
        self.fileOffset = fileOffset
    }

    /// The running program's; nil when it was linked without one.
    public static func ofRunningProgram() -> BuildIdentity? {
        var offset: UInt64 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: 64) { buffer, initialized in
            initialized = cj_build_id(buffer.baseAddress, buffer.count, &offset)
        }
        return bytes.isEmpty ? nil : BuildIdentity(bytes: bytes, fileOffset: Int64(offset))
    }

    /// Lower-case hex, as `file` and `readelf -n` print it.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xf)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Whether the open file `file` (`path` for errors) holds this id where this program's
    /// file does.
    public func isIn(_ file: FileDescriptor, path: String) throws(SystemError) -> Bool {
        try file.readBytes(count: bytes.count, at: fileOffset, path: path) == bytes
    }
}
