import CJail
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// The btrfs backend: the jail's directory STATE/NAME is a subvolume of its own, and the
/// qgroup btrfs keeps for that subvolume (0/ID) is limited to `--disk` referenced bytes.
/// Referenced, not exclusive: everything the jail's tree holds counts, extents it shares with
/// another tree (a `--copy` made with reflinks) included, so the limit is what the tenant sees
/// and cannot be stretched by sharing. btrfs has no inode limit: `--disk-inodes` needs the
/// image backend. The qgroup is btrfs's own accounting, enforced by the kernel (EDQUOT), and
/// set by host root: root inside the jail has no CAP_SYS_ADMIN over the host's file system,
/// which BTRFS_IOC_QGROUP_LIMIT needs; and the jail reaches the subvolume only through its
/// overlay, which passes no btrfs ioctl, so nobody inside can make a subvolume or snapshot of
/// its own there (one would have a qgroup of its own, unlimited): hence overlay roots only,
/// no `--copy` (see `DiskStorage.btrfsCopy`). `statfs` on btrfs does not report qgroups: `df /`
/// inside shows the whole btrfs file system (docs/disk.md).
///
/// The `btrfs` program (btrfs-progs) does the work, as useradd does for accounts: its ioctls
/// and the qgroup tree's format are its to know.
struct BtrfsQuota {
    /// STATE/NAME.
    let directory: String

    static let superMagic: Int = 0x9123_683E

    /// Whether `path` lives on btrfs.
    static func isBtrfs(_ path: String) -> Bool {
        // One that cannot be looked at is not taken for btrfs (what needs btrfs then refuses).
        guard let info = try? FileSystemUsage(path: path) else { return false }
        return Int(info.type) == superMagic
    }

    /// Whether quotas are enabled on the btrfs file system holding `path` (nil: they are; else why not).
    static func quotaProblem(_ path: String) -> String? {
        let result: ProgramResult
        do { result = try runProgram("/usr/bin/btrfs", ["qgroup", "show", "--raw", path]) } catch {
            if error.errno == .noSuchFileOrDirectory { return "the btrfs program (package btrfs-progs) is not installed" }
            return "cannot run /usr/bin/btrfs: \(error)"
        }
        return result.status == 0 ? nil : "quotas are off (\(result.reason)): run btrfs quota enable on its mount point"
    }

    /// The subvolume (mode 0700, root's) with its limit.
    static func make(at directory: String, bytes: UInt64) throws(DiskError) {
        try run(["subvolume", "create", directory])
        do { try setMode(directory, 0o700) } catch {
            removeAfterFailure(directory)
            throw .system("\(error)")
        }
        do { try BtrfsQuota(directory: directory).limit(bytes) } catch {
            removeAfterFailure(directory)
            throw error
        }
    }

    /// Sets the limit, also on a running jail (btrfs changes it live). A limit below what the
    /// jail already holds is refused: the jail could delete nothing it has without EDQUOT
    /// surprises at every write; the operator frees space first.
    /// At every start, so it costs two ioctls and two sysfs reads, no program.
    func limit(_ bytes: UInt64) throws(DiskError) {
        let current = try usage()
        if current.limit == bytes { return }
        // The counts are as of btrfs's last commit: before refusing, commit and count again.
        if current.referenced > bytes {
            guard cj_btrfs_sync(directory) == 0 else { throw .system("\(SystemError.last("BTRFS_IOC_SYNC", path: directory))") }
            let now = try usage()
            if now.referenced > bytes {
                throw .badOption("--disk \(bytes >> 20)M: the jail's files take \(now.referenced >> 20) MiB; "
                    + "delete some inside, or keep the size")
            }
        }
        guard cj_btrfs_limit_referenced(directory, bytes) == 0 else {
            throw .system("\(SystemError.last("BTRFS_IOC_QGROUP_LIMIT", path: directory))")
        }
    }

    /// Referenced bytes and the limit (nil: none) of the subvolume's qgroup, as btrfs's sysfs
    /// shows them (/sys/fs/btrfs/UUID/qgroups/0_ID, Linux 5.9): as of the last commit.
    func usage() throws(DiskError) -> (referenced: UInt64, limit: UInt64?) {
        var uuid = [CChar](repeating: 0, count: 37)
        var id: UInt64 = 0
        guard cj_btrfs_subvolume(directory, &uuid, &id) == 0 else {
            throw .system("\(SystemError.last("BTRFS_IOC_INO_LOOKUP", path: directory))")
        }
        let qgroup = "/sys/fs/btrfs/\(String(decoding: uuid.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))/qgroups/0_\(id)"
        func number(_ name: String) throws(DiskError) -> UInt64 {
            let text: String
            do { text = try readText(qgroup + "/" + name) } catch {
                throw .unsupported("\(directory): no qgroup (\(error)): are quotas enabled (btrfs quota enable)?")
            }
            guard let n = UInt64(text.trimmingWhitespace()) else { throw .system("\(qgroup)/\(name): not a number") }
            return n
        }
        let limit = try number("max_referenced")
        return (try number("referenced"), limit == 0 ? nil : limit)
    }

    /// Whether `directory` is a subvolume's top (btrfs gives every subvolume root inode 256).
    static func isSubvolume(_ directory: String) -> Bool {
        guard isBtrfs(directory) else { return false }
        // One that cannot be looked at is not taken for a subvolume: what would use it as one
        // (delete, limit) fails on it then, and says so.
        do { return try fileStatus(directory)?.st_ino == 256 } catch { return false }
    }

    /// Deletes the subvolume and what is in it; its qgroup goes with it (Linux 6.7 and later
    /// remove a deleted subvolume's qgroup once it is empty), and `--commit-after` waits
    /// for the deletion to be on disk.
    static func remove(_ directory: String) throws(DiskError) {
        try run(["subvolume", "delete", "--commit-after", directory])
    }

    /// Undoes a half-made subvolume: the failure that led here is the one the operator sees.
    static func removeAfterFailure(_ directory: String) {
        do { try remove(directory) } catch { JailLogHandler.emitToTerminal("cannot remove \(directory): \(error)") }
    }

    @discardableResult
    static func run(_ arguments: [String]) throws(DiskError) -> String {
        let result: ProgramResult
        do { result = try runProgram("/usr/bin/btrfs", arguments) } catch { throw .system("\(error)") }
        // btrfs writes its "ERROR: …" to stderr before the progress line buffered on stdout.
        let error = result.output.split(separator: "\n").first { $0.hasPrefix("ERROR: ") }.map(String.init) ?? result.reason
        guard result.status == 0 else { throw .program("btrfs \(arguments.prefix(2).joined(separator: " "))", reason: error) }
        return result.output
    }
}
