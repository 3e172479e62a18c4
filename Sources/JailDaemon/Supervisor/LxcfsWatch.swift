import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// lxcfs restarted under a running jail: the files bound from its old mount fail with ENOTCONN
/// ("Transport endpoint is not connected") in every jail, for `free`, `top`, `uptime` alike —
/// LXC and Incus containers have the same caveat. The supervisor looks every `period` (one
/// stat through /proc/INIT/root), logs the breakage once, and as soon as lxcfs is mounted
/// again binds its new files over the stale ones in the jail's mount namespace
/// (bindInNamespace); `jaild list` shows a jail whose views are still broken.
struct LxcfsWatch {
    let directory: String
    let initPid: pid_t
    static let period: Int64 = 5000
    var nextCheck: Int64
    /// Logged once per breakage, again after a repair.
    var reported = false

    init(directory: String, initPid: pid_t, now: Int64) {
        self.directory = directory
        self.initPid = initPid
        nextCheck = now + Self.period
    }

    func timeout(now: Int64) -> Int32 { Int32(max(0, nextCheck - now)) }

    mutating func check(jail: String, now: Int64) {
        guard now >= nextCheck else { return }
        nextCheck = now + Self.period
        guard LxcfsViews.jailViewIsBroken(root: "/proc/\(initPid)/root") else { return }
        guard case .mounted = LxcfsViews.probe(directory) else {
            if !reported {
                log.warning("jail \(jail): lxcfs at \(directory) is gone (stopped or restarted): the jail's /proc/meminfo, cpuinfo, stat, uptime … fail with ENOTCONN until lxcfs is mounted again, then jaild binds it again")
                reported = true
            }
            return
        }
        switch Self.rebind(initPid: initPid, directory: directory) {
        case .success:
            log.info("jail \(jail): lxcfs restarted: its files bound again in the jail")
            reported = false
        case .failure(let error):
            if !reported { log.warning("jail \(jail): lxcfs restarted and its files cannot be bound again: \(error) (restart the jail)") }
            reported = true
        }
    }

    /// lxcfs's files over the stale ones in the jail of `initPid`.
    static func rebind(initPid: pid_t, directory: String) -> Result<Void, SystemError> {
        let path = "/proc/\(initPid)/ns/mnt"
        let namespace: FileDescriptor
        do { namespace = try openFile(path, O_RDONLY) } catch { return .failure(error) }
        defer { namespace.closeQuietly() }
        do {
            try bindInNamespace(namespace, sources: LxcfsViews.files.map { directory + $0 }, targets: LxcfsViews.files,
                                name: directory)
        } catch { return .failure(SystemError("bind lxcfs in the jail", path: directory, errno: error.errno)) }
        return .success(())
    }
}
