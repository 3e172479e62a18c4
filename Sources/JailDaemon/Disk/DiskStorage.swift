import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A jail's files under its `--disk` limit: its directory STATE/NAME (the one `jaild create`
/// made, beside ROOT) and the backend that holds it. The hooks of the rest of jaild are here:
/// `choose` for create, `prepare` and `stateTree` for a start, `remove` for destroy.
public struct DiskStorage: Sendable {
    /// STATE/NAME.
    public let directory: String
    /// With a concrete backend (btrfs or image).
    public let limit: DiskLimit

    var image: DiskImage { DiskImage(path: directory + "/" + DiskImage.fileName) }

    /// The storage a configuration names, checked: nil without `--disk`.
    public init?(_ configuration: JailConfiguration) throws(DiskError) {
        guard var limit = configuration.disk else { return nil }
        guard !configuration.rootless else { throw .unsupported("--disk needs jaild run as root (it makes loop devices or qgroups)") }
        guard let root = configuration.root else {
            throw .unsupported("--disk needs a jail made by jaild create (-r STATE/NAME/root): the host's root has no limit")
        }
        let directory = Preflight.parentDirectory(BindMount.normalize(root))
        let image = directory + "/" + DiskImage.fileName
        let hasImage: Bool
        do { hasImage = try fileStatus(image) != nil } catch { throw .system("\(error)") }
        let isSubvolume = BtrfsQuota.isSubvolume(directory)
        if limit.backend == .auto { limit.backend = hasImage ? .image : isSubvolume ? .btrfs : .auto }
        switch limit.backend {
        case .image:
            guard hasImage else { throw .unsupported("--disk: \(image) does not exist (jaild create --disk makes it)") }
            guard configuration.overlay != nil else { throw .unsupported("--disk-backend image needs a root on a base (--base)") }
            guard configuration.mapsRange else {
                throw .unsupported("--disk-backend image needs the user namespace: with --no-userns the overlay is mounted by path")
            }
        case .btrfs:
            guard isSubvolume else { throw .unsupported("--disk: \(directory) is not a btrfs subvolume (jaild create --disk makes it)") }
            if limit.inodes != nil { throw .unsupported(Self.btrfsInodes) }
            guard configuration.overlay != nil else { throw .unsupported(Self.btrfsCopy) }
        case .project:
            throw .unsupported(Self.projectQuotaReason(directory))
        case .auto:
            throw .unsupported("--disk: \(directory) has neither a disk image nor a btrfs subvolume: "
                + "a limit is set up by jaild create --disk (existing jails cannot be given one)")
        }
        self.directory = directory
        self.limit = limit
    }

    static let btrfsInodes = "--disk-inodes: btrfs has no inode limit; use --disk-backend image (or auto, which picks it)"
    /// A root the jail reaches directly on btrfs (not through overlayfs, which passes no btrfs
    /// ioctl) lets any of its users make a subvolume there, whose qgroup is not the jail's:
    /// unlimited space. Measured: root inside a --copy jail, BTRFS_IOC_SUBVOL_CREATE succeeded.
    static let btrfsCopy = "--disk-backend btrfs needs a root on a base: in a --copy root the jail could make btrfs "
        + "subvolumes of its own, outside its qgroup"

    /// Before a start: the image resized or the qgroup limit set to `--disk`.
    public func prepare() throws(DiskError) {
        switch limit.backend {
        case .image: try image.fit(limit)
        case .btrfs: try BtrfsQuota(directory: directory).limit(limit.bytes)
        default: break
        }
    }

    /// The tree that holds upper/ and work/: for an image its file system, detached; nil for
    /// the other backends (the directory itself is the tree).
    func attachImage(readOnly: Bool = false) throws(DiskError) -> FileDescriptor? {
        limit.backend == .image ? try image.attach(readOnly: readOnly) : nil
    }

    /// The backend a new jail in `stateDirectory`/NAME gets; refuses with the file system's
    /// reason and the fix. `overlay`: a root on a base (not `--copy`); `userNamespace`: not --no-userns.
    static func choose(_ limit: DiskLimit, stateDirectory: String, overlay: Bool, userNamespace: Bool) throws(DiskError) -> DiskBackend {
        let onBtrfs = BtrfsQuota.isBtrfs(stateDirectory)
        let fileSystem = fileSystemName(stateDirectory)
        func imageProblem() -> String? {
            if !overlay { return "an image holds an overlay's upper layer, and --copy has none" }
            if !userNamespace { return "with --no-userns the overlay is mounted by path" }
            if !isAccessible("/usr/sbin/mkfs.ext4", X_OK) { return "mkfs.ext4 (package e2fsprogs) is not installed" }
            if !isAccessible("/dev/loop-control", F_OK) { return "this kernel has no loop devices (/dev/loop-control)" }
            return nil
        }
        switch limit.backend {
        case .project:
            throw .unsupported(projectQuotaReason(stateDirectory))
        case .btrfs:
            guard onBtrfs else {
                throw .unsupported("--disk-backend btrfs: \(stateDirectory) is on \(fileSystem), not btrfs; use --disk-backend image")
            }
            if limit.inodes != nil { throw .unsupported(btrfsInodes) }
            if !overlay { throw .unsupported(btrfsCopy) }
            if let problem = BtrfsQuota.quotaProblem(stateDirectory) {
                throw .unsupported("--disk-backend btrfs: on \(stateDirectory) \(problem)")
            }
            return .btrfs
        case .image:
            if let problem = imageProblem() { throw .unsupported("--disk-backend image: \(problem)") }
            return .image
        case .auto:
            let btrfsProblem: String? = !onBtrfs ? "\(stateDirectory) is on \(fileSystem), not btrfs"
                : limit.inodes != nil ? "btrfs has no inode limit"
                : !overlay ? "a --copy root could make subvolumes outside its qgroup" : BtrfsQuota.quotaProblem(stateDirectory)
            if btrfsProblem == nil { return .btrfs }
            guard let problem = imageProblem() else { return .image }
            throw .unsupported("--disk: no backend can hold this jail: btrfs: \(btrfsProblem ?? ""); image: \(problem)")
        }
    }

    /// Why project quotas are refused: the kernel's or the mount's reason first, else that
    /// this jaild does not implement them (docs/disk.md).
    static func projectQuotaReason(_ path: String) -> String {
        let fileSystem = fileSystemName(path)
        let option = fileSystem == "xfs" ? "CONFIG_XFS_QUOTA" : "CONFIG_QFMT_V2"
        if let config = try? runProgram("/bin/zcat", ["/proc/config.gz"]), config.status == 0,
           !config.output.contains("\n\(option)=y") {
            return "--disk-backend project: this kernel lacks \(option), so \(fileSystem) project quotas cannot be mounted; "
                + "use --disk-backend image or btrfs"
        }
        return "--disk-backend project: project quotas are not implemented by this jaild (\(path) is on \(fileSystem)); "
            + "use --disk-backend image or btrfs"
    }

    /// The common name of the file system `path` is on.
    static func fileSystemName(_ path: String) -> String {
        guard let info = try? FileSystemUsage(path: path) else { return "an unknown file system" }  // named in a refusal only
        let names: [Int: String] = [0xEF53: "ext4", 0x5846_5342: "xfs", BtrfsQuota.superMagic: "btrfs", 0x0102_1994: "tmpfs",
                                    0x794C_7630: "overlayfs", 0x2FC1_2FC1: "zfs"]
        return names[Int(info.type)] ?? "file system type 0x\(String(info.type, radix: 16))"
    }
}
