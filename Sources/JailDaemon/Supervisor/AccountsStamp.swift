import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// What stat(2) says of a file that tells one version of it from the next: a rename over it
/// (as the shadow tools and jaild write /etc/passwd and the like) gives a new inode, and any
/// write, chmod or chown moves its ctime, which unlike the mtime no utimensat can set back.
struct FileIdentity: Equatable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: timespec
    var changed: timespec

    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modified = info.st_mtim
        changed = info.st_ctim
    }

    static func == (a: FileIdentity, b: FileIdentity) -> Bool {
        a.device == b.device && a.inode == b.inode && a.size == b.size && a.modified.tv_sec == b.modified.tv_sec
            && a.modified.tv_nsec == b.modified.tv_nsec && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
    }

    var line: String { "\(device) \(inode) \(size) \(modified.tv_sec).\(modified.tv_nsec) \(changed.tv_sec).\(changed.tv_nsec)" }

    /// Whether the file last changed at least a second before `now`: only then can no later
    /// write leave its ctime as it is now. A write in the same tick of the kernel's coarse
    /// clock as the stat that was checked would (Git's "racy" index entries, the same problem).
    func isSettled(before now: timespec) -> Bool {
        changed.tv_sec < now.tv_sec - 1 && modified.tv_sec < now.tv_sec - 1
    }
}

/// `/var/lib/jail/userns/START.checked`: the identities of /etc/passwd, /etc/group,
/// /etc/subuid and /etc/subgid when the range starting at START last passed its check
/// (`UserRangeStore.recheck`) for the jail user's ids. The check depends on nothing else, so
/// while all four are the same files, unchanged, it would pass again: a restart then reads
/// none of them (each has a line per tenant). Written only after a full check passed, and only
/// when every file had been unchanged for a second by then (`isSettled`); a stamp that does
/// not match to the byte, or cannot be read, means the full check. Removed with the range at
/// `jaild destroy`; one left by a range removed by hand is harmless (it still says only that
/// these files passed for this range and these ids).
struct AccountsStamp {
    let start: UInt32
    let ids: [UInt32]
    let path: String

    /// The stamp's text for these identities (nil: a file not there).
    func text(_ identities: [FileIdentity?], paths: HostIDFiles.Paths) -> String {
        // No joined(separator:): its first call resolves the Swift runtime's witnesses for it,
        // 0.07 ms of the supervisor's start before the clone (perf, 2-core test VM).
        var text = "range \(start) ids "
        for (index, id) in ids.enumerated() { text += index == 0 ? String(id) : "," + String(id) }
        text += "\n"
        for (file, identity) in zip(paths.all, identities) { text += "\(file) \(identity?.line ?? "absent")\n" }
        return text
    }

    /// Whether the stamp says the files as they are now passed for this range and these ids.
    /// Any doubt (no stamp, a file that cannot be stat'ed) is false: the full check decides.
    func matches(_ paths: HostIDFiles.Paths) -> Bool {
        let recorded: [UInt8]
        do throws(SystemError) {
            guard let bytes = try readFileIfPresent(path, limit: 4096) else { return false }
            recorded = bytes
        } catch {
            log.debug("\(error): the id range is checked in full")
            return false
        }
        var identities: [FileIdentity?] = []
        for file in paths.all {
            // stat(2), following a symlink as the open of the full check does.
            do throws(SystemError) { identities.append(try fileStatusFollowingLinks(file).map(FileIdentity.init)) } catch {
                log.debug("\(error): the id range is checked in full")
                return false
            }
        }
        return recorded.elementsEqual(text(identities, paths: paths).utf8)
    }

    /// Writes the stamp for the files whose check just passed, as fstat(2) saw them when they
    /// were read; `readAt` is the clock before that read. Nothing when one of them changed in
    /// the second before: a stamp of a file still changing could miss its next change (an old
    /// stamp left then matches no file as it is now, and no later version either). A stamp
    /// that cannot be written only costs the next start the full check.
    func record(_ identities: [FileIdentity?], paths: HostIDFiles.Paths, readAt: timespec) {
        guard identities.allSatisfy({ $0?.isSettled(before: readAt) ?? true }) else { return }
        do throws(SystemError) {
            try writeFile(path, Array(text(identities, paths: paths).utf8), mode: 0o600, .atomic,
                          temporary: "\(path).\(getpid())")
        } catch {
            log.debug("\(error): the next start checks the id range in full")
        }
    }

    static func realtimeNow() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now
    }
}
