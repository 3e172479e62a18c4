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
/// which BTRFS_IOC_QGROUP_LIMIT needs. `statfs` on btrfs does not report qgroups: `df /`
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
        var info = cj_fs_usage()
        return cj_statfs(path, &info) == 0 && Int(info.type) == superMagic
    }

    /// Whether quotas are enabled on the btrfs file system holding `path` (nil: they are; else why not).
    static func quotaProblem(_ path: String) -> String? {
        guard let result = try? runProgram("/usr/bin/btrfs", ["qgroup", "show", "--raw", path]) else {
            return "the btrfs program (package btrfs-progs) is not installed"
        }
        return result.status == 0 ? nil : "quotas are off (\(result.reason)): run btrfs quota enable on its mount point"
    }

    /// The subvolume (mode 0700, root's) with its limit.
    static func make(at directory: String, bytes: UInt64) throws(DiskError) {
        try run(["subvolume", "create", directory])
        guard chmod(directory, 0o700) == 0 else {
            let error = SystemError.last("chmod", path: directory)
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
    func limit(_ bytes: UInt64) throws(DiskError) {
        let current = try usage()
        if current?.limit == bytes { return }
        // The counts are as of btrfs's last commit: before refusing, commit and count again.
        if let current, current.referenced > bytes, let usage = try usage(sync: true), usage.referenced > bytes {
            throw .badOption("--disk \(bytes >> 20)M: the jail's files take \(usage.referenced >> 20) MiB; delete some inside, or keep the size")
        }
        try Self.run(["qgroup", "limit", "\(bytes)", directory])
    }

    /// Referenced bytes and the limit of the subvolume's qgroup (nil: no qgroup found), as of
    /// the last commit (up to 30 s old), or now with `sync` (a commit of the whole file system).
    func usage(sync: Bool = false) throws(DiskError) -> (referenced: UInt64, limit: UInt64?)? {
        let output = try Self.run(["qgroup", "show", "--raw", "-r", "-f"] + (sync ? ["--sync"] : []) + [directory])
        // qgroupid rfer excl max_rfer: "0/257 16384 16384 67108864" (max_rfer "none" when unlimited).
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 4, fields[0].hasPrefix("0/"), let referenced = UInt64(fields[1]) else { continue }
            return (referenced, UInt64(fields[3]))
        }
        return nil
    }

    /// Whether `directory` is a subvolume's top (btrfs gives every subvolume root inode 256).
    static func isSubvolume(_ directory: String) -> Bool {
        var info = stat()
        return isBtrfs(directory) && lstat(directory, &info) == 0 && info.st_ino == 256
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
        guard result.status == 0 else { throw .program("btrfs \(arguments.prefix(2).joined(separator: " "))", reason: result.reason) }
        return result.output
    }
}
