import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// How init knows that a peer on its control socket is root on the host (operator entry,
/// adoption), exactly.
///
/// SO_PEERCRED cannot tell: in the jail's user namespace host root is unmapped, so it shows as
/// the overflow uid 65534 like every other unmapped host uid. Instead the peer passes, with its
/// request, a descriptor of `OperatorEntry.proofDirectory`, root's 0700 directory, opened for
/// reading — which takes read permission on it, so host root (or a process host root gave the
/// descriptor to). init records that directory's device and inode before pivot_root, while the
/// host's tree is still in its view, and compares them with the descriptor's; it also refuses an
/// O_PATH descriptor, which anyone who can search the parent can open.
///
/// The directory must live as long as the jails that recorded it: removed and made again, it is
/// another inode, and those jails refuse `jaild enter` and adoption until they are restarted.
/// Nothing in it is ever read; /run is emptied at boot, with the jails.
public struct OperatorProof: Equatable {
    let device: UInt64
    let inode: UInt64

    /// The supervisor, before the clone, and `jaild enter`: makes the directory, or checks that
    /// it is root's and closed to everyone else (anything else would prove nothing). A jail
    /// started by a jaild from before the proof has none (and its init asks for none).
    public static func prepareDirectory(_ path: String = OperatorEntry.proofDirectory) throws(JailError) {
        let parent = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        // Whatever is there already is checked below: its kind, owner and mode decide.
        for (directory, mode) in [(parent, mode_t(0o755)), (path, mode_t(0o700))] where !directory.isEmpty {
            do { try makeDirectory(directory, mode: mode) } catch where error.errno == .fileExists {} catch { throw .system(error) }
        }
        let info = try JailError.wrap { () throws(SystemError) in try fileStatus(path) }
        guard let info, isDirectory(info), info.st_uid == 0, info.st_mode & 0o077 == 0 else {
            throw .startFailed("\(path) must be a directory of root's with mode 0700: only host root may be able to open it")
        }
    }

    /// init, before pivot_root: the directory's identity, to compare with what peers pass.
    static func record(_ path: String = OperatorEntry.proofDirectory) throws(JailError) -> OperatorProof {
        let info = try JailError.wrap { () throws(SystemError) in try fileStatus(path) }
        guard let info, isDirectory(info), info.st_mode & 0o077 == 0 else {
            throw .startFailed("\(path) is not the 0700 directory jaild makes: operator entry and adoption could not be checked")
        }
        return OperatorProof(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Whether `descriptor`, passed by a peer, is the recorded directory opened for reading.
    func isProvenBy(_ descriptor: Int32) -> Bool {
        // A descriptor that cannot be looked at proves nothing.
        let passed = FileDescriptor(rawValue: descriptor)
        guard let flags = try? passed.statusFlags(), flags & CJ_O_PATH == 0, flags & O_ACCMODE != O_WRONLY,
              let info = try? passed.fileStatus(), isDirectory(info) else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// A peer's side: the descriptor to pass (read-only, close-on-exec), the directory made
    /// first if a jaild from before the proof started the jail.
    static func open(_ path: String = OperatorEntry.proofDirectory) throws(JailError) -> FileDescriptor {
        try prepareDirectory(path)
        return try JailError.wrap { () throws(SystemError) in
            try openFile(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        }
    }
}
