import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The allocations of jails' id ranges: one file per slot in /var/lib/jail/userns, named by its
/// first id (`1073741824.range`) and holding the jail's name (its cgroup name, one per socket)
/// and socket. Created with O_EXCL, so two jaild starting at once never take the same slot;
/// kept when the jail stops, so the same jail gets the same range again and the files it wrote
/// keep their owners.
///
/// Each range is also reserved where the shadow tools look, by a line `root:START:65536` in
/// /etc/subuid and /etc/subgid, so that useradd never gives those ids to a new account as its
/// subordinate ids (with which newuidmap would make that account the jail's root). The line is
/// added under the shadow tools' locks (ShadowLock), checked at every start and adoption, and
/// removed by `jaild destroy` (`release`): only that exact line, the one jaild wrote.
struct UserRangeStore {
    static let directory = "/var/lib/jail/userns"
    static let subuid = "/etc/subuid"
    static let subgid = "/etc/subgid"
    let directory: String
    /// /etc/passwd, /etc/group, /etc/subuid and /etc/subgid (others in tests).
    let accounts: HostIDFiles.Paths
    /// CLOCK_REALTIME, which file times are in (another in tests: a stamp needs settled files).
    let clock: () -> timespec

    init(directory: String = UserRangeStore.directory, accounts: HostIDFiles.Paths = .host,
         clock: @escaping () -> timespec = AccountsStamp.realtimeNow) {
        self.directory = directory
        self.accounts = accounts
        self.clock = clock
    }

    /// The range of the jail called `name`: its own if it has one, else the first free slot;
    /// reserved in /etc/subuid and /etc/subgid, and no other principal's. A jail that has its
    /// range finds it through the index (one readlink and one small read, however many jails
    /// there are); only a jail without an index entry (made by a jaild before the index) reads
    /// every range file, once, and is indexed then.
    func range(for name: String, socket: String, pool: UserRangePool, ids: [UInt32]) throws(JailError) -> UInt32 {
        let span = SubordinateSpan.parse(loginDefs: hostFile("/etc/login.defs"))
        if let refusal = span.refusal(of: pool) { throw .userNamespace(refusal) }
        try makeDirectory()
        if let start = try indexedStart(of: name) {
            try recheck(start, ids: ids)
            return start
        }
        // A miss is a first start once every range file is known to be indexed (`indexIsComplete`):
        // no file is read. Before that, the walk of every range file, once for all of them.
        if !indexIsComplete, let mine = try indexEveryRange().first(where: { $0.name == name }) {
            try recheck(mine.start, ids: ids)
            return mine.start
        }
        let lock = try ShadowLock.acquire([accounts.subuid, accounts.subgid])
        defer { lock.release() }
        // Read once, under the locks: the choice of a slot and its check see the same files.
        let files = try readAccounts().files
        let inUse = UserRange.hostIDsInUse(files, ids: ids)
        // The names of the range files are enough here (the slots taken), not their contents.
        let taken = Set(takenSlots())
        // Slot by slot, not UserRange.candidates: the first free one ends the walk (16,382 slots).
        for slot in pool.slots where !taken.contains(slot) && !UserRange.overlaps(slot, inUse) {
            let path = "\(directory)/\(slot).range"
            // The entry before the file: a range file never exists without its entry, even after
            // a crash between the two, so destroy finds every range through the index (an entry
            // whose file is not there, or names another, is ignored).
            try index(name, start: slot)
            let created = try JailError.wrap { () throws(SystemError) in try createExclusively(path, "\(name) \(socket)\n") }
            if !created { continue }  // another jaild was faster
            do {
                // The slot holds none of `inUse`, read from these same files (under the locks):
                // the check of `reserve` (`UserRange.conflict`) would only find that again.
                try reserve(slot, ids: ids, files: files, checked: true)
            } catch {
                discardFile(path)
                discardFile("\(indexDirectory)/\(name)")
                throw error
            }
            return slot
        }
        discardFile("\(indexDirectory)/\(name)")
        throw .userNamespace("no free id range in the user-namespace pool \(pool) (\(pool.count / UserRangePool.slotSize) "
            + "ranges, see \(directory)): give a larger --userns-pool, or remove the files of jails that are gone")
    }

    /// The index: by-name/NAME, a symlink to its range file (`../START.range`), so that a start
    /// finds its range without reading the file of every other jail. The range file stays the
    /// truth: an entry is used only when the file it names holds NAME (an entry left by a range
    /// removed by hand, or by a test's cleanup, is ignored and replaced).
    var indexDirectory: String { directory + "/by-name" }

    func indexedStart(of name: String) throws(JailError) -> UInt32? {
        guard let target = ProcessIdentity.link("\(indexDirectory)/\(name)"), target.hasPrefix("../"),
              target.hasSuffix(".range"), let start = UInt32(target.dropFirst(3).dropLast(6)),
              let owner = try holder(of: start), owner.name == name else { return nil }
        return start
    }

    /// `by-name/.complete`: every range file had its index entry when it was written. Every
    /// jaild since the index writes a range's entry before its file, so
    /// from then on a name without an entry has no range: a first start reads no range file.
    /// Removing the marker (say, after restoring range files by hand) makes the next start walk
    /// them all again and index what it finds.
    var completeMarker: String { indexDirectory + "/.complete" }

    var indexIsComplete: Bool { (try? fileStatus(completeMarker)) != nil }

    /// Reads every range file, indexes each one whose entry is missing or wrong, then writes
    /// the marker; returns what it read. A file still being written (no name yet) is skipped:
    /// the jaild writing it indexes it itself.
    func indexEveryRange() throws(JailError) -> [(start: UInt32, name: String)] {
        let all = try allocations()
        if mkdir(indexDirectory, 0o700) < 0 && errno != EEXIST { throw .system(.last("mkdir", path: indexDirectory)) }
        for (start, name) in all where !name.isEmpty {
            if try indexedStart(of: name) != start { try index(name, start: start) }
        }
        let created = try JailError.wrap { () throws(SystemError) in try createExclusively(completeMarker, "\(all.count) ranges indexed\n") }
        if !created { log.debug("\(completeMarker) was written meanwhile by another jaild") }
        return all
    }

    /// The name and socket a range file holds; nil when there is no such file. One that cannot
    /// be read is an error: taken for absent, its jail would be given a second range (and
    /// its files, owned by the first, would not be its own any more).
    func holder(of start: UInt32) throws(JailError) -> (name: String, socket: String)? {
        let path = "\(directory)/\(start).range"
        let bytes: [UInt8]
        do { bytes = try readFile(path, limit: 4096) } catch {
            if error.errno == .noSuchFileOrDirectory { return nil }
            throw .failed("cannot read the id range file \(path)", error)
        }
        let words = bytes.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\n") })
        return (words.first.map { String(decoding: $0, as: UTF8.self) } ?? "",
                words.dropFirst().first.map { String(decoding: $0, as: UTF8.self) } ?? "")
    }

    /// Points by-name/NAME at START's file: a new link renamed over the old, so a reader sees
    /// one or the other. Only NAME's own supervisor (holding its pid file lock) or its destroy
    /// writes NAME's entry.
    func index(_ name: String, start: UInt32) throws(JailError) {
        let path = "\(indexDirectory)/\(name)"
        let temporary = "\(indexDirectory)/.\(name).\(getpid())"
        try JailError.wrap { () throws(SystemError) in
            try ensureDirectory(indexDirectory, mode: 0o700)
            try removeFile(temporary)
            try makeSymlink("../\(start).range", at: temporary)
            do throws(SystemError) { try renameFile(temporary, to: path) } catch {
                discardFile(temporary)
                throw error
            }
        }
    }

    /// At every start of a jail that has its range, and at adoption: the range is still
    /// reserved and no other principal's; a reservation missing (a jail started before jaild
    /// made them) is added if the range is free. Checked first without the locks, which only a
    /// write needs: the shadow tools and jaild replace these files by rename, so a read sees one
    /// whole version (the locks, their fdatasyncs and unlinks in /etc, cost 2–4 ms of a start).
    ///
    /// The check is a function of the four files, the range and the ids alone, so when none of
    /// the files changed since it last passed for this range and these ids (`AccountsStamp`:
    /// each file's device, inode, size, mtime and ctime, as stat(2) gives them now), it passes
    /// again without reading them: four stats and one small read, however many tenants the
    /// files list. Any change to a file changes its ctime (or, replaced, its inode), and the
    /// full check runs.
    func recheck(_ start: UInt32, ids: [UInt32]) throws(JailError) {
        let stamp = AccountsStamp(start: start, ids: ids, path: "\(directory)/\(start).checked")
        if stamp.matches(accounts) { return }
        let readAt = clock()
        let (files, identities) = try readAccounts()
        if try reserve(start, ids: ids, files: files, writing: false) {
            stamp.record(identities, paths: accounts, readAt: readAt)
            return
        }
        let lock = try ShadowLock.acquire([accounts.subuid, accounts.subgid])
        defer { lock.release() }
        try reserve(start, ids: ids, files: try readAccounts().files)
    }

    /// Refuses a range that an account, a group or another subordinate range takes, then adds
    /// the `root:START:65536` lines that are missing (the shadow locks held, `files` read under
    /// them), or with `writing: false` only says whether both are there. `checked`: the range
    /// was chosen from these files as free (`UserRange.hostIDsInUse`), nothing to refuse.
    @discardableResult
    func reserve(_ start: UInt32, ids: [UInt32], files: HostIDFiles, writing: Bool = true,
                 checked: Bool = false) throws(JailError) -> Bool {
        if !checked, let conflict = UserRange.conflict(start: start, files: files, ids: ids) {
            let last = UInt64(start) + UInt64(UserRange.insideCount) - 1
            throw .userNamespace("the jail's id range \(start)-\(last) is not its own any more: \(conflict) "
                + "(remove that, or give the jail another range: jaild destroy, or remove \(directory)/\(start).range)")
        }
        let line = UserRange.reservation(start: start)
        let missing = [(accounts.subuid, files.subuid), (accounts.subgid, files.subgid)].filter { !UserRange.holds($0.1, line: line) }
        guard writing else { return missing.isEmpty }
        for (path, bytes) in missing { try appendShadowLine(path, line, to: String(decoding: bytes, as: UTF8.self)) }
        return true
    }

    /// The four files, each read once through one descriptor, and what fstat(2) said of each
    /// as it was read (for the stamp). A file that is not there is empty; one that cannot be
    /// read is an error (taken for empty, its ids would look free).
    func readAccounts() throws(JailError) -> (files: HostIDFiles, identities: [FileIdentity?]) {
        var contents: [[UInt8]] = []
        var identities: [FileIdentity?] = []
        for path in accounts.all {
            do throws(SystemError) {
                guard let fd = try openFileIfPresent(path, O_RDONLY) else {
                    contents.append([])
                    identities.append(nil)
                    continue
                }
                defer { closeDescriptor(fd.rawValue) }
                identities.append(FileIdentity(try fd.fileStatus()))
                contents.append(try readAll(fd))
            } catch {
                throw .failed("cannot read \(path) (the host's accounts and subordinate ids)", error)
            }
        }
        return (HostIDFiles(passwd: contents[0], group: contents[1], subuid: contents[2], subgid: contents[3]), identities)
    }

    /// Every slot taken: (first id, jail name). Reads every range file: only for a jail that
    /// has no index entry yet.
    func allocations() throws(JailError) -> [(start: UInt32, name: String)] {
        var slots: [(start: UInt32, name: String)] = []
        // A file still being written (empty) is taken all the same.
        for start in takenSlots() { slots.append((start, try holder(of: start)?.name ?? "")) }
        return slots
    }

    /// The first id of every range file, from the directory's names alone.
    func takenSlots() -> [UInt32] {
        listDirectory(directory).compactMap { file in file.hasSuffix(".range") ? UInt32(file.dropLast(6)) : nil }
    }

    /// Gives back the range of the jail `name` on `socket` (`jaild destroy`): its reservation
    /// lines leave /etc/subuid and /etc/subgid, then its file and its index entry, and the slot
    /// is free for the next jail. Found through the index; every range file is read only when
    /// the index has no entry and is not known complete. Files on disk keep the ids they have inside (the
    /// rootfs is idmapped), so nothing of the host is left owned by the range.
    func release(name: String, socket: String) throws(JailError) {
        var mine: [UInt32]
        if let start = try indexedStart(of: name), try holder(of: start)?.socket == socket {
            mine = [start]
        } else if indexIsComplete {
            // Every range file has its entry (`range(for:)` writes the entry first): no entry, no
            // range — a jail never started. Before, this read every range file (18 % of
            // destroying such a jail at 2,000 tenants).
            mine = []
        } else {
            mine = []
            for start in takenSlots() where try holder(of: start)?.socket == socket { mine.append(start) }
        }
        guard !mine.isEmpty else {
            // An entry whose range is gone already: nothing it could name.
            try JailError.wrap { () throws(SystemError) in try removeFile("\(indexDirectory)/\(name)") }
            return
        }
        let lock = try ShadowLock.acquire([accounts.subuid, accounts.subgid])
        defer { lock.release() }
        mine.sort()
        for start in mine {
            let line = UserRange.reservation(start: start)
            for path in [accounts.subuid, accounts.subgid] {
                let text = try shadowFile(path)
                if UserRange.holds(text, line: line) { try replaceShadowFile(path, with: UserRange.removing(line, from: text)) }
            }
            try JailError.wrap { () throws(SystemError) in
                try removeFile("\(directory)/\(start).checked")
                try removeFile("\(directory)/\(start).range")
            }
        }
        try JailError.wrap { () throws(SystemError) in try removeFile("\(indexDirectory)/\(name)") }
    }

    /// `line` added at the end of /etc/subuid or /etc/subgid, which held `text` when read under
    /// the shadow locks (the caller holds them): a start writes its line, not the whole file
    /// again (a line per jail: the rewrite and its sync grew with the jails, 1.7× the start at
    /// 2,000 tenants). One write(2) with O_APPEND, the newline the file lacks first; a short
    /// write is cut off again, so no half line stays; synced before the locks go, as the
    /// rewrite was. A file that is not there, not a regular file, or that changed since `text`
    /// was read (written without the locks) is rewritten whole instead (`replaceShadowFile`).
    /// Removal (`release`) still rewrites: it takes a line out of the middle.
    func appendShadowLine(_ path: String, _ line: String, to text: String) throws(JailError) {
        let addition = Array(((text.isEmpty || text.utf8.last == UInt8(ascii: "\n") ? "" : "\n") + line + "\n").utf8)
        let appended = try JailError.wrap { () throws(SystemError) -> Bool in
            guard !text.isEmpty else { return false }
            return try appendDurably(path, addition, expectedSize: text.utf8.count)
        }
        if !appended { try replaceShadowFile(path, with: UserRange.adding(line, to: try shadowFile(path))) }
    }

    /// /etc/subuid or /etc/subgid replaced whole, as shadow's commonio_close does: a new file
    /// beside it (`FILE+`) with the old one's mode and owner (0644 root:root when it is new),
    /// synced, then renamed over it, so a reader sees the old text or the new, never half.
    func replaceShadowFile(_ path: String, with text: String) throws(JailError) {
        try JailError.wrap { () throws(SystemError) in try replaceFileKeepingOwner(path, Array(text.utf8), temporary: path + "+") }
    }

    /// /var/lib/jail/userns, root's alone: only jaild decides who owns which ids.
    func makeDirectory() throws(JailError) {
        var path = ""
        for component in directory.split(separator: "/") {
            path += "/" + component
            let mode: mode_t = path == directory ? 0o700 : 0o755
            try JailError.wrap { () throws(SystemError) in try ensureDirectory(path, mode: mode) }
        }
        let reason = try JailError.wrap { () throws(SystemError) in try untrustedDirectoryReason(directory, owners: [0]) }
        if let reason { throw .userNamespace("refusing \(directory): it \(reason)") }
    }

    /// /etc/subuid or /etc/subgid, to be rewritten: empty only when it does not exist (any
    /// other failure to read it must not become a rewrite that loses its lines).
    func shadowFile(_ path: String) throws(JailError) -> String {
        do { return String(decoding: try readFile(path), as: UTF8.self) } catch {
            if error.errno == .noSuchFileOrDirectory { return "" }
            throw .system(error)
        }
    }

    func hostFile(_ path: String) -> String {
        (try? readFile(path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
}
