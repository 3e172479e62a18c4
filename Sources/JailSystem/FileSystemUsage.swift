import CJail

/// What statfs(2) says of the file system `path` is on: its type (the magic number, e.g.
/// btrfs's 0x9123683E) and its sizes in blocks and inodes.
public struct FileSystemUsage: Equatable, Sendable {
    public let type: Int64
    public let blockSize: UInt64
    public let blocks: UInt64
    public let blocksFree: UInt64
    public let files: UInt64
    public let filesFree: UInt64

    public init(path: String) throws(SystemError) {
        var usage = cj_fs_usage()
        try syscall("statfs", path: path) { cj_statfs(path, &usage) }
        (type, blockSize, blocks, blocksFree) = (usage.type, usage.block_size, usage.blocks, usage.blocks_free)
        (files, filesFree) = (usage.files, usage.files_free)
    }
}
