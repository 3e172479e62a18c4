import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A copy of jaild's own file, made by a root start and mapped by every later one
/// (`ProtectedBinary`), so that jaild's code is in memory in 2 MiB pages.
///
/// Why: a start runs three jaild processes (the first, the supervisor, init), and a fork does
/// not copy the page-table entries of a file's mapping: each process faults jaild's code in
/// again, page by page, and the fault is what costs on a virtual machine. On a file system
/// that keeps a file's cache in large folios (ext4 since Linux 6.16, xfs), a file written in
/// 2 MiB pieces is cached in 2 MiB folios, and the kernel maps each with one entry: measured on
/// the 2-core test VM, about 250 fewer page faults per start (text 324 -> ~60) and 0.87–0.93 of
/// the start's time (30–40 starts, paired). The file jaild runs from is not cached that way:
/// the linker, dpkg or cp wrote it in small pieces, and pages of it stay cached as long as a
/// jail maps them. The copy is only ever written here in 2 MiB pieces and mapped with
/// MADV_HUGEPAGE (CJail/selfexec.c), so that after the cache dropped it (this VM drops caches
/// every few minutes) it comes back in 2 MiB pages too; but for the 2 MiB window of the code
/// an idle process keeps mapped (CJail/memory.c), written in 64 KiB pieces and read in small
/// ones, so an idle tenant keeps 64 KiB of code mapped, not its 2 MiB folio.
///
/// `/var/cache/jail/jaild-BUILDID-SIZE`, root's alone (0700 directory, 0500 file): a copy is used
/// only when its size and build id are the running file's (an id that is the linker's hash of
/// the whole output), and it is replaced when not. It is written, synced and renamed into
/// place by the first start of a build (under a lock; a start that finds the lock taken runs
/// without the copy), which keeps the two newest copies of other builds (two jaild builds used
/// in turn, as in an upgrade, do not rewrite them at each start) and removes the rest; a jail
/// started from a removed one keeps running from it (its mapping holds the inode).
public enum ExecutableCache {
    public static let directory = "/var/cache/jail"
    /// The pieces the copy is written in: the size of a folio that one page-table entry maps.
    static let piece = 2 << 20
    /// The smallest piece: what the kernel maps around a fault anyway (fault-around, 64 KiB).
    static let smallestPiece: Int64 = 64 << 10

    /// The bytes of the file that hold the code an idle process keeps mapped while it sleeps
    /// (CJail/memory.c); nil when they cannot be told.
    static func keptCode() -> Range<Int64>? {
        var start: UInt64 = 0
        var end: UInt64 = 0
        guard cj_idle_text_file_range(&start, &end) == 1, end > start else { return nil }
        return Int64(start)..<Int64(end)
    }

    /// The writes that copy a file of `size` bytes: 2 MiB pieces, except that a piece holding
    /// `kept` is halved, and its halves that hold it again, down to 64 KiB. The cache keeps each
    /// piece as one folio, and Linux 6.18 maps a whole folio at a fault: the kept code, faulted
    /// back in after the idle release, brings 64 KiB with it, not 2 MiB (1.8 MiB more resident
    /// per idle process, measured), while the rest of its window still comes in large pieces.
    static func pieces(size: Int64, kept: Range<Int64>?) -> [Range<Int64>] {
        var result: [Range<Int64>] = []
        func add(_ piece: Range<Int64>) {
            guard piece.lowerBound < size else { return }
            if let kept, piece.overlaps(kept), piece.count > smallestPiece {
                let middle = piece.lowerBound + Int64(piece.count) / 2
                add(piece.lowerBound..<middle)
                add(middle..<piece.upperBound)
            } else {
                result.append(piece.lowerBound..<min(piece.upperBound, size))
            }
        }
        for start in stride(from: Int64(0), to: size, by: piece) { add(start..<(start + Int64(piece))) }
        return result
    }

    /// Room left on the file system after the copy; with less, no copy is made.
    static let spareBytes: UInt64 = 64 << 20

    /// The copy of the running jaild (`identity`: its build id), opened for reading and made
    /// when missing or not a copy; nil when another start holds the lock (it is making it).
    public static func image(for identity: BuildIdentity) throws(ExecutableCacheError) -> FileDescriptor? {
        let outcome: Outcome
        do { outcome = try prepare(identity) } catch { throw .call(error) }
        switch outcome {
        case .usable(let file): return file
        case .busy: return nil
        case .refused(let error): throw error
        }
    }

    enum Outcome {
        case usable(FileDescriptor)
        case busy
        case refused(ExecutableCacheError)
    }

    static func prepare(_ identity: BuildIdentity) throws(SystemError) -> Outcome {
        let size = try fileStatusFollowingLinks("/proc/self/exe").map { Int64($0.st_size) } ?? 0
        // The size too: a stripped build (the package's) keeps its build id.
        let name = "jaild-\(identity.hex)-\(size)"
        let path = "\(directory)/\(name)"
        // Before any file in it is trusted: only root may change what the directory holds.
        if try fileStatus(directory) == nil { try ensureDirectory(directory, mode: 0o700) }
        if let reason = try untrustedDirectoryReason(directory, owners: [0]) {
            return .refused(.untrustedDirectory(path: directory, reason: reason))
        }
        if case .usable(let file) = try check(path, identity: identity, size: size) { return .usable(file) }
        let anchor = try openFile(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        defer { closeDescriptor(anchor.rawValue) }
        guard try anchor.lock(exclusive: true, wait: false) else { return .busy }
        if case .usable(let file) = try check(path, identity: identity, size: size) { return .usable(file) }
        let usage = try FileSystemUsage(path: directory)
        guard usage.blocksFree * usage.blockSize >= UInt64(size) + spareBytes else {
            return .refused(.noRoom(path: directory, needed: UInt64(size) + spareBytes))
        }
        try removeOldEntries(of: anchor, except: name)
        try write(size: size, to: name, in: anchor)
        switch try check(path, identity: identity, size: size) {
        case .usable(let file): return .usable(file)
        case .absent: return .refused(.notACopy(path: path, reason: "gone after it was written"))
        case .notACopy(let reason): return .refused(.notACopy(path: path, reason: reason))
        }
    }

    enum Found {
        case usable(FileDescriptor)
        case absent
        case notACopy(String)
    }

    /// The file at `path` if it is root's, writable by nobody else, and a copy of this build.
    static func check(_ path: String, identity: BuildIdentity, size: Int64) throws(SystemError) -> Found {
        guard let file = try openFileIfPresent(path, O_RDONLY | O_NOFOLLOW) else { return .absent }
        do {
            let info = try file.fileStatus()
            let reason: String? =
                info.st_mode & S_IFMT != S_IFREG ? "not a regular file"
                : info.st_uid != 0 ? "owned by uid \(info.st_uid)"
                : info.st_mode & 0o022 != 0 ? "writable by others than root"
                : Int64(info.st_size) != size ? "\(info.st_size) bytes, jaild's file has \(size)"
                : try !identity.isIn(file, path: path) ? "another build id"
                : nil
            if let reason {
                closeDescriptor(file.rawValue)
                return .notACopy(reason)
            }
            return .usable(file)
        } catch {
            closeDescriptor(file.rawValue)
            throw error
        }
    }

    /// Copies of other builds kept beside the running one's.
    static let otherBuildsKept = 2

    /// Every entry of the cache but `name` and the newest `otherBuildsKept` copies of other
    /// builds: older builds' copies, and one a crash left half-written.
    static func removeOldEntries(of anchor: FileDescriptor, except name: String) throws(SystemError) {
        var copies: [(modified: Int, name: String)] = []
        for entry in try directoryEntries(of: anchor, path: directory) where entry.name != name {
            if entry.name.hasPrefix("jaild-"), let info = try fileStatus(entry.name, in: anchor), info.st_mode & S_IFMT == S_IFREG {
                copies.append((info.st_mtim.tv_sec * 1_000_000_000 + info.st_mtim.tv_nsec, entry.name))
            } else {
                try removeFile(entry.name, in: anchor)
            }
        }
        for old in copies.sorted(by: { $0.modified > $1.modified }).dropFirst(otherBuildsKept) {
            try removeFile(old.name, in: anchor)
        }
    }

    /// jaild's file copied to `name` in 2 MiB pieces (the cache then holds it in 2 MiB folios),
    /// synced, and renamed into place: a crash leaves no partial copy under that name.
    static func write(size: Int64, to name: String, in anchor: FileDescriptor) throws(SystemError) {
        let temporary = ".\(name).new"
        let shown = "\(directory)/\(temporary)"
        let source = try openFile("/proc/self/exe", O_RDONLY)
        defer { closeDescriptor(source.rawValue) }
        let copy = try openFile(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o500, in: anchor)
        do throws(SystemError) {
            for range in pieces(size: size, kept: keptCode()) {
                let bytes = try source.readBytes(count: range.count, at: range.lowerBound, path: "/proc/self/exe")
                guard bytes.count == range.count else { throw SystemError("read", path: "/proc/self/exe", errno: .ioError) }
                try copy.writeBytes(bytes, at: range.lowerBound, path: shown)
            }
            try copy.synchronize(path: shown)
        } catch {
            closeDescriptor(copy.rawValue)
            discardFile(temporary, in: anchor)
            throw error
        }
        do {
            try closeAfterWriting(copy, path: shown)
            try renameFile(temporary, to: name, in: anchor)
        } catch {
            discardFile(temporary, in: anchor)
            throw error
        }
    }
}

/// Why a start runs without the cached copy of jaild (it runs from jaild's own file).
public enum ExecutableCacheError: Error, CustomStringConvertible, Equatable {
    case call(SystemError)
    case untrustedDirectory(path: String, reason: String)
    case notACopy(path: String, reason: String)
    case noRoom(path: String, needed: UInt64)

    public var description: String {
        switch self {
        case .call(let error): "\(error)"
        case .untrustedDirectory(let path, let reason): "\(path) \(reason)"
        case .notACopy(let path, let reason): "\(path) is not a copy of this jaild: \(reason)"
        case .noRoom(let path, let needed): "\(path): less than \(needed >> 20) MiB free"
        }
    }
}
