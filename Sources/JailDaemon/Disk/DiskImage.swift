import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The image backend: an ext4 file system in a sparse file per jail (STATE/NAME/disk.img,
/// inside the jail's 0700 directory), holding the overlay's upper/ and work/. It is mounted
/// nowhere on the host: `attach` gives a detached mount (fsmount) over a loop device with
/// autoclear, the supervisor idmaps it and builds the jail's overlay over it, so the mount
/// lives only in the jail's mount namespace and the loop device frees itself when the jail is
/// gone, whatever way it ends (a crashed jaild included). Why ext4, with its journal: it
/// has a fixed inode count (`--disk-inodes` is mkfs's `-N`), grows and shrinks with resize2fs
/// on a file, and the journal spares a host crash a full fsck of every tenant's image.
struct DiskImage {
    let path: String

    static let fileName = "disk.img"

    /// The journal: 4 MiB (mkfs's minimum) up to 1 GiB of `--disk`, then 1/256 of it (at most
    /// 256 MiB): small jails lose little to it, big ones keep a journal that does not stall.
    static func journalBytes(for bytes: UInt64) -> UInt64 {
        min(max(4 << 20, bytes / 256), 256 << 20) & ~UInt64((1 << 20) - 1)
    }

    /// One inode per 16 KiB unless `--disk-inodes` says otherwise (mke2fs.conf's default ratio).
    static func inodes(for limit: DiskLimit) -> UInt64 { limit.inodes ?? max(limit.bytes / 16384, DiskLimit.minimumInodes) }

    /// The file's size: `--disk` plus what ext4 keeps for itself (the journal, 256 bytes of
    /// inode table per inode, group descriptors, bitmaps and the reserve for growing, about
    /// 1/256), so that the tenant can write `--disk` bytes and `df /` inside shows about that.
    /// Measured: --disk 64M -N 2000: `df /` inside shows 64.5 MiB, the jail user wrote 63 MiB.
    static func fileBytes(for limit: DiskLimit) -> UInt64 {
        let overhead = journalBytes(for: limit.bytes) + inodes(for: limit) * 256 + limit.bytes / 256 + (256 << 10)
        return (limit.bytes + overhead + 4095) & ~UInt64(4095)
    }

    /// A new image: the file (0600 root, sparse: it takes what the tenant writes, not SIZE),
    /// then mkfs.ext4 on it. Fails if the file exists.
    static func make(at path: String, limit: DiskLimit) throws(DiskError) {
        let fd: FileDescriptor
        do { fd = try openFile(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600) } catch {
            throw .system("\(SystemError("create", path: path, errno: error.errno))")
        }
        var failure: SystemError?
        do throws(SystemError) {
            // On btrfs (an image asked for with --disk-inodes): no copy-on-write. Elsewhere the
            // flag does not exist, and nothing is lost without it.
            if BtrfsQuota.isBtrfs(Preflight.parentDirectory(path)) {
                try syscall("FS_IOC_SETFLAGS(FS_NOCOW_FL)", path: path) { cj_set_no_copy_on_write(fd.rawValue) }
            }
            try fd.setSize(Int64(fileBytes(for: limit)), path: path)
        } catch { failure = error }
        closeDescriptor(fd.rawValue)  // nothing was written through it: mkfs writes the file
        if let failure {
            discardFile(path)
            throw .system("\(failure)")
        }
        // -m 0: blocks reserved for uid 0 would be host root's, which no process of the jail is.
        // -E root_owner: the image's root directory is host root's, as STATE/NAME is.
        var arguments = ["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-J", "size=\(journalBytes(for: limit.bytes) >> 20)",
                         "-E", "nodiscard,root_owner=0:0", "-L", "jail-disk"]
        arguments += ["-N", "\(inodes(for: limit))"]
        do { try run("/usr/sbin/mkfs.ext4", arguments + [path]) } catch {
            discardFile(path)
            throw error
        }
    }

    /// The image's file system as a detached mount (nosuid, nodev), never attached on the host.
    /// A loop device already over the image (the jail runs, and this is adoption or a second
    /// reader) is shared, never a second one: two ext4 mounts of one image through two devices
    /// would corrupt it. The lock on the file serializes jailds attaching or resizing it.
    /// `readOnly` (reading the jail's passwd before a start): a read-only superblock, which
    /// writes nothing at its unmount (its journal commit took 4.8 ms here), unless the jail runs (adoption),
    /// whose read-write superblock is shared as it is.
    func attach(readOnly: Bool = false) throws(DiskError) -> FileDescriptor {
        let image = try openLocked()
        defer { closeDescriptor(image.rawValue) }
        // The loop ioctls and the mount are the point here: they stay raw (CJail).
        var number: Int32 = -1
        var loop = cj_loop_find(image.rawValue, &number)
        let shared = loop >= 0
        if loop < 0 {
            // The loop device keeps the file it is given open for its whole life, and a flock
            // belongs to that open file: it gets a file of its own, or the lock would be
            // held until the jail stops.
            let backing: FileDescriptor
            do { backing = try openFile(path, O_RDWR | O_NOFOLLOW) } catch { throw .system("\(error)") }
            defer { closeDescriptor(backing.rawValue) }
            do { loop = try syscall("loop device", path: path) { cj_loop_attach(backing.rawValue, &number) } } catch {
                throw .system("\(error)")
            }
        }
        // The descriptor pins the device until the file system holds it.
        defer { closeDescriptor(loop) }
        do {
            return FileDescriptor(rawValue: try syscall("mount ext4 /dev/loop\(number)", path: path) {
                cj_mount_device_detached("ext4", "/dev/loop\(number)", readOnly && !shared ? 1 : 0)
            })
        } catch { throw .system("\(error)") }
    }

    /// At a start: the image grown or shrunk to `--disk` when it changed, while no jail has it
    /// attached (a running jail keeps its size until its next start). Growing keeps every file;
    /// shrinking is resize2fs's to refuse when the files do not fit.
    func fit(_ limit: DiskLimit) throws(DiskError) {
        let image = try openLocked()
        defer { closeDescriptor(image.rawValue) }
        var number: Int32 = -1
        let loop = cj_loop_find(image.rawValue, &number)
        if loop >= 0 {
            closeDescriptor(loop)
            return
        }
        let info: stat
        do { info = try image.fileStatus() } catch { throw .system("\(SystemError("fstat", path: path, errno: error.errno))") }
        let want = Self.fileBytes(for: limit)
        let have = UInt64(info.st_size)
        if want == have { return }
        // resize2fs wants a checked file system; -p repairs only what is safe without asking.
        let check = try runStatus("/usr/sbin/e2fsck", ["-f", "-p", path])
        guard check.status < 4 else { throw .program("e2fsck", reason: check.reason) }
        if want > have {
            do { try image.setSize(Int64(want), path: path) } catch { throw .system("\(error)") }
            try run("/usr/sbin/resize2fs", [path])
        } else {
            let result = try runStatus("/usr/sbin/resize2fs", [path, "\(want / 4096)"])
            guard result.status == 0 else {
                throw .badOption("--disk \(limit.bytes >> 20)M: the jail's files do not fit (resize2fs: \(result.reason)); "
                    + "delete some inside, or keep the size")
            }
            do { try image.setSize(Int64(want), path: path) } catch { throw .system("\(error)") }
        }
    }

    /// The image, opened read-write (a regular file of root's, not a link), locked exclusively.
    private func openLocked() throws(DiskError) -> FileDescriptor {
        let fd: FileDescriptor
        do { fd = try openFile(path, O_RDWR | O_NOFOLLOW) } catch { throw .system("\(error)") }
        var info: stat?
        do { info = try fd.fileStatus() } catch { info = nil }  // refused below, as a file of another kind
        guard let info, info.st_mode & S_IFMT == S_IFREG, info.st_uid == 0, info.st_mode & 0o022 == 0 else {
            closeDescriptor(fd.rawValue)
            throw .system("\(path) is not a regular file of root's that only root can write")
        }
        do { try fd.lock() } catch {
            closeDescriptor(fd.rawValue)
            throw .system("\(SystemError("flock", path: path, errno: error.errno))")
        }
        return fd
    }

    private func run(_ program: String, _ arguments: [String]) throws(DiskError) {
        let result = try runStatus(program, arguments)
        guard result.status == 0 else { throw .program(String(program.split(separator: "/").last ?? ""), reason: result.reason) }
    }

    private static func run(_ program: String, _ arguments: [String]) throws(DiskError) {
        try DiskImage(path: "").run(program, arguments)
    }

    private func runStatus(_ program: String, _ arguments: [String]) throws(DiskError) -> ProgramResult {
        do { return try runProgram(program, arguments) } catch { throw .system("\(error)") }
    }
}
