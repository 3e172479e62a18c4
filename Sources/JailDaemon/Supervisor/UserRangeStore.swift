import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// The allocations of jails' id ranges: one file per slot in /var/lib/jail/userns, named by its
/// first id (`1048576.range`) and holding the jail's name (its cgroup name, one per socket) and
/// socket. Created with O_EXCL, so two jaild starting at once never take the same slot; kept
/// when the jail stops, so the same jail gets the same range again and the files it wrote keep
/// their owners.
struct UserRangeStore {
    static let directory = "/var/lib/jail/userns"
    let directory: String

    init(directory: String = UserRangeStore.directory) {
        self.directory = directory
    }

    /// The range of the jail called `name`: its own if it has one, else the first free slot.
    func range(for name: String, socket: String, pool: UserRangePool, ids: [UInt32]) throws(JailError) -> UInt32 {
        try makeDirectory()
        let records = allocations()
        if let mine = records.first(where: { $0.name == name }) { return mine.start }
        let inUse = UserRange.hostIDsInUse(passwd: hostFile("/etc/passwd"), group: hostFile("/etc/group"),
                                           subuid: hostFile("/etc/subuid"), subgid: hostFile("/etc/subgid"), ids: ids)
        let taken = Set(records.map(\.start))
        for slot in UserRange.candidates(pool: pool, inUse: inUse, taken: taken) {
            let path = "\(directory)/\(slot).range"
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
            if fd < 0 && errno == EEXIST { continue }  // another jaild was faster
            if fd < 0 { throw .system(.last("open", path: path)) }
            let text = Array("\(name) \(socket)\n".utf8)
            let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            if written != text.count {
                unlink(path)
                throw .system(.last("write", path: path))
            }
            return slot
        }
        throw .userNamespace("no free id range in the user-namespace pool \(pool) (\(pool.count / UserRangePool.slotSize) "
            + "ranges, see \(directory)): give a larger --userns-pool, or remove the files of jails that are gone")
    }

    /// Every slot taken: (first id, jail name).
    func allocations() -> [(start: UInt32, name: String)] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var out: [(UInt32, String)] = []
        while let entry = readdir(dir) {
            let file = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard file.hasSuffix(".range"), let start = UInt32(file.dropLast(6)) else { continue }
            let text = (try? readFile("\(directory)/\(file)", limit: 4096)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            // A file still being written (empty) is taken all the same.
            out.append((start, text.split(separator: " ").first.map(String.init) ?? ""))
        }
        return out
    }

    /// Gives back the range of the jail on `socket` (`jaild destroy`): the slot is free for the
    /// next jail. Files on disk keep the ids they have inside (the rootfs is idmapped), so
    /// nothing of the host is left owned by the range.
    func release(socket: String) {
        for file in listDirectory(directory) where file.hasSuffix(".range") {
            let path = "\(directory)/\(file)"
            let words = ((try? readText(path)) ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" })
            if words.count >= 2 && words[1] == socket { unlink(path) }
        }
    }

    /// /var/lib/jail/userns, root's alone: only jaild decides who owns which ids.
    func makeDirectory() throws(JailError) {
        var path = ""
        for component in directory.split(separator: "/") {
            path += "/" + component
            if mkdir(path, path == directory ? 0o700 : 0o755) < 0 && errno != EEXIST { throw .system(.last("mkdir", path: path)) }
        }
        let reason = try JailError.wrap { () throws(SystemError) in try untrustedDirectoryReason(directory, owners: [0]) }
        if let reason { throw .userNamespace("refusing \(directory): it \(reason)") }
    }

    func hostFile(_ path: String) -> String {
        (try? readFile(path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
}
