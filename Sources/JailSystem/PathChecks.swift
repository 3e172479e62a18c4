import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Questions about a path that follow symlinks, as the program that will use the path does
// (`fileStatus` and `linkStatus` look at a symlink itself), and reads where a missing file
// is an answer.

/// access(2) with the real ids: throws when `path` is not `mode` (X_OK, R_OK, F_OK…) for them.
public func checkAccess(_ path: String, _ mode: Int32) throws(SystemError) {
    try syscall("access", path: path) { access(path, mode) }
}

/// Whether `path` leads to something `mode` allows (access(2)): for a question whose "no",
/// whatever its errno, is an answer (is mkfs.ext4 installed?).
public func isAccessible(_ path: String, _ mode: Int32) -> Bool {
    access(path, mode) == 0
}

/// A whole file as text, nil when it does not exist (any other failure is thrown).
public func readTextIfPresent(_ path: String) throws(SystemError) -> String? {
    do { return try readText(path) } catch where error.errno == .noSuchFileOrDirectory { return nil }
}

/// A whole file (up to `limit`), nil when it does not exist (any other failure is thrown).
public func readFileIfPresent(_ path: String, limit: Int = 16 << 20) throws(SystemError) -> [UInt8]? {
    do { return try readFile(path, limit: limit) } catch where error.errno == .noSuchFileOrDirectory { return nil }
}
