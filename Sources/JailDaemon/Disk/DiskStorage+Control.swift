import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What `jaild list` shows of a jail's disk: usage against the limit, as the kernel counts it.
struct DiskUsage: Equatable {
    let backend: DiskBackend
    let bytes: UInt64
    let limitBytes: UInt64?
    /// Files in use and the most it may have (image only: btrfs counts no inodes).
    let inodes: UInt64?
    let inodeLimit: UInt64?

    /// The disk of the running jail whose root is `root` (STATE/NAME/root) and whose init is
    /// `initPid`; nil when it has no limit. An image is mounted only in the jail, so its
    /// usage is what statfs says of the jail's root there (overlayfs answers for its upper
    /// layer, the image); a subvolume's is its qgroup's.
    static func of(root: String, initPid: Int32) -> DiskUsage? {
        let directory = Preflight.parentDirectory(BindMount.normalize(root))
        // Read by `jaild list` of any user: a state directory it cannot look into counts as
        // holding an image, whose usage statfs then cannot give either (no row figure).
        if somethingExists(at: directory + "/" + DiskImage.fileName) {
            // Not this caller's to look into (a user's `jaild list`), or the jail just stopped: no figure.
            guard let info = try? FileSystemUsage(path: "/proc/\(initPid)/root") else { return nil }
            return DiskUsage(backend: .image, bytes: (info.blocks - info.blocksFree) * info.blockSize,
                             limitBytes: info.blocks * info.blockSize,
                             inodes: info.files - info.filesFree, inodeLimit: info.files)
        }
        // Not there: the jail has no btrfs limit (or quotas were turned off since), which the
        // row shows as none.
        guard BtrfsQuota.isSubvolume(directory), let usage = try? BtrfsQuota(directory: directory).usage(),
              let limit = usage.limit else { return nil }
        return DiskUsage(backend: .btrfs, bytes: usage.referenced, limitBytes: limit, inodes: nil, inodeLimit: nil)
    }

    /// `12M/64M image` for the table.
    var column: String {
        "\(bytes >> 20)M/\(limitBytes.map { "\($0 >> 20)M" } ?? "-") \(backend.rawValue)"
    }

    /// The JSON fields, `null` where the backend cannot tell.
    static func jsonFields(_ usage: DiskUsage?) -> String {
        func number(_ n: UInt64?) -> String { n.map { "\($0)" } ?? "null" }
        return "\"disk_bytes\":\(number(usage?.bytes)),\"disk_limit_bytes\":\(number(usage?.limitBytes)),"
            + "\"disk_inodes\":\(number(usage?.inodes)),\"disk_inodes_limit\":\(number(usage?.inodeLimit)),"
            + "\"disk_backend\":\(usage.map { "\"\($0.backend.rawValue)\"" } ?? "null")"
    }
}

extension DiskStorage {
    /// `jaild destroy`, after the jail stopped: a subvolume is deleted (its qgroup with it), an
    /// image is left for the directory's removal once no loop device holds it any more (the
    /// jail's last mount gone, autoclear frees the device). With `keepData` both stay; returns
    /// where the tenant's files are then, or nil when this jail has no limited disk.
    static func release(directory: String, keepData: Bool) throws(DiskError) -> String? {
        let image = DiskImage(path: directory + "/" + DiskImage.fileName)
        let hasImage: Bool
        do { hasImage = try fileStatus(image.path) != nil } catch { throw .system("\(error)") }
        if hasImage {
            try image.awaitDetached(seconds: 5)
            return keepData ? "\(image.path) (ext4: mount -o loop,ro,nosuid,nodev to read it)" : image.path
        }
        guard BtrfsQuota.isSubvolume(directory) else { return nil }
        if keepData { return directory + "/upper (a btrfs subvolume with its limit)" }
        try BtrfsQuota.remove(directory)
        return directory
    }
}

extension DiskImage {
    /// Waits (bounded) until no loop device is backed by the image: a stopped jail's namespace
    /// is gone when its supervisor exits, its mounts a moment later.
    func awaitDetached(seconds: Int) throws(DiskError) {
        let fd: FileDescriptor
        do { fd = try openFile(path, O_RDONLY | O_NOFOLLOW) } catch { throw .system("\(error)") }
        defer { closeDescriptor(fd.rawValue) }
        for _ in 0..<(seconds * 100) {
            var number: Int32 = -1
            let loop = cj_loop_find(fd.rawValue, &number)
            if loop < 0 { return }
            closeDescriptor(loop)
            sleepMilliseconds(10)
        }
        throw .system("\(path) is still attached to a loop device (is a process of the jail left?); nothing removed")
    }
}
