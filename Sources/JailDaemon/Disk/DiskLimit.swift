/// `--disk SIZE`, `--disk-inodes N`, `--disk-backend auto|btrfs|image|project`: how much of the
/// host's disk a jail's own files may take (its overlay's upper and work directories, or its
/// copied root), and which mechanism holds it there (docs/disk.md).
public struct DiskLimit: Sendable, Equatable {
    /// The bytes the jail's files may take.
    public var bytes: UInt64
    /// The files (inodes) it may have; nil: the backend's default (one per 16 KiB of `bytes`
    /// for an image; btrfs has no inode limit).
    public var inodes: UInt64?
    public var backend: DiskBackend

    /// Below 16 MiB an image would be mostly its own file system's bookkeeping (a 4 MiB journal,
    /// inode tables, bitmaps), and a btrfs qgroup that small fails the jail's first package
    /// install; a limit that small is a typo (`--disk 16` meant 16M), not a plan.
    public static let minimumBytes: UInt64 = 16 << 20
    /// Fewer files than this and the base's own directories copied up would exhaust them.
    public static let minimumInodes: UInt64 = 256
    /// ext4 counts inodes in 32 bits.
    public static let maximumInodes: UInt64 = 1 << 32 - 1

    public init(bytes: UInt64, inodes: UInt64? = nil, backend: DiskBackend = .auto) {
        self.bytes = bytes
        self.inodes = inodes
        self.backend = backend
    }

    /// The three options as given (nil when absent); nil when there is no `--disk`.
    public static func parse(size: String?, inodes: String?, backend: String?) throws(DiskError) -> DiskLimit? {
        let chosen = try backend.map { text throws(DiskError) in
            guard let b = DiskBackend(rawValue: text) else { throw .badOption("--disk-backend '\(text)' is not auto, btrfs, image or project") }
            return b
        } ?? .auto
        let count = try inodes.map { text throws(DiskError) in try parseInodes(text) }
        guard let size else {
            if inodes != nil { throw .badOption("--disk-inodes needs --disk SIZE") }
            if backend != nil { throw .badOption("--disk-backend needs --disk SIZE") }
            return nil
        }
        return DiskLimit(bytes: try parseSize(size), inodes: count, backend: chosen)
    }

    public static func parseSize(_ text: String) throws(DiskError) -> UInt64 {
        guard let bytes = ByteSize.parse(text) else {
            throw .badOption("--disk '\(text)' is not a size like 10G (a number above 0, with K, M, G or T)")
        }
        guard bytes >= minimumBytes else {
            throw .badOption("--disk \(text) is below the minimum of 16M (an image's own file system takes several MiB)")
        }
        return bytes
    }

    public static func parseInodes(_ text: String) throws(DiskError) -> UInt64 {
        guard let n = UInt64(text), (minimumInodes...maximumInodes).contains(n) else {
            throw .badOption("--disk-inodes '\(text)' is not a number from \(minimumInodes) to \(maximumInodes)")
        }
        return n
    }
}

/// Which mechanism holds a jail to its `--disk`.
public enum DiskBackend: String, Sendable, Equatable {
    /// btrfs with quotas where the state directory is on it (and no inode limit is asked), else image.
    case auto
    /// A subvolume per jail (STATE/NAME) with a qgroup limit on its referenced bytes.
    case btrfs
    /// An ext4 file system in a sparse file per jail (STATE/NAME/disk.img), loop-mounted only
    /// inside the jail's mount namespace.
    case image
    /// ext4/XFS project quotas: refused with the file system's reason (docs/disk.md).
    case project
}

/// Why a disk limit cannot be had: one line for the operator.
public enum DiskError: Error, Equatable, CustomStringConvertible {
    case badOption(String)
    /// The backend cannot work here; the text names the file system and the fix.
    case unsupported(String)
    /// A system call on the image, subvolume or loop device failed.
    case system(String)
    /// A program (mkfs.ext4, resize2fs, btrfs) failed: which, and its last line.
    case program(String, reason: String)

    public var description: String {
        switch self {
        case .badOption(let s): s
        case .unsupported(let s): s
        case .system(let s): s
        case .program(let name, let reason): "\(name): \(reason)"
        }
    }
}
