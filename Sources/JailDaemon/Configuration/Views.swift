import CJail
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// `--views auto|required|off`: whether the jail's /proc and /sys show its own machine (memory,
/// CPUs, uptime) through lxcfs, the host's FUSE file system that LXC and Incus mount over the
/// same files (docs/views.md).
///
/// `auto`, the default: lxcfs's files when lxcfs is mounted, else the host's, with one warning
/// at start. Not `required` by default: lxcfs is a host service an operator may not run, and a
/// jail that refused to start without it would turn a missing package into an outage; what a
/// tenant loses without it is the right numbers in `free` and `top`, not isolation (the limits
/// hold either way). `required` refuses to start without it; `off` never uses it.
public enum ViewsMode: String, Sendable, CaseIterable {
    case auto
    case required
    case off
}

/// lxcfs's files and where they go in the jail.
public enum LxcfsViews {
    /// Debian's lxcfs.service mounts it here.
    public static let defaultDirectory = "/var/lib/lxcfs"

    /// The files bound over the jail's: lxcfs path (relative to its mount) = jail path.
    /// `/proc/loadavg` is the jail's only when lxcfs runs with `-l` (Debian's unit does not):
    /// without it lxcfs serves the host's figures through the same file.
    public static let files = [
        "/proc/meminfo", "/proc/cpuinfo", "/proc/stat", "/proc/uptime", "/proc/loadavg", "/proc/swaps",
        "/proc/diskstats", "/sys/devices/system/cpu/online",
    ]

    /// FUSE_SUPER_MAGIC of statfs(2).
    static let fuseMagic: Int64 = 0x6573_5546

    public enum Status: Equatable, Sendable {
        /// Mounted, and every file of `files` is there.
        case mounted(device: UInt64)
        /// Nothing mounted at the directory (lxcfs not installed or not running).
        case absent
        /// Mounted, but its daemon is gone (ENOTCONN): lxcfs was stopped or restarted.
        case disconnected
    }

    /// What is at `directory` now: a FUSE mount whose files answer, or not.
    public static func probe(_ directory: String) -> Status {
        let fs: FileSystemUsage
        do { fs = try FileSystemUsage(path: directory) } catch { return error.errno == .socketNotConnected ? .disconnected : .absent }
        guard fs.type == fuseMagic else { return .absent }
        do {
            for file in files {
                if try fileStatusFollowingLinks(directory + file) == nil { return .absent }
            }
            guard let info = try fileStatusFollowingLinks(directory) else { return .absent }
            return .mounted(device: UInt64(info.st_dev))
        } catch {
            return error.errno == .socketNotConnected ? .disconnected : .absent
        }
    }

    /// The lxcfs directory the jail's files come from, or nil for the host's own, as `mode`
    /// asks; the warning to log when `auto` falls back; an error when `required` cannot be met.
    public static func choose(_ mode: ViewsMode, directory: String) -> (directory: String?, warning: String?, error: String?) {
        guard mode != .off else { return (nil, nil, nil) }
        switch probe(directory) {
        case .mounted:
            return (directory, nil, nil)
        case let status:
            let why = status == .disconnected
                ? "lxcfs at \(directory) is not connected (its daemon stopped or restarted)"
                : "lxcfs is not mounted at \(directory)"
            let fix = "install and start lxcfs (Debian: apt install lxcfs; for jaild@.service see contrib/systemd/jaild@.service.d/lxcfs.conf)"
            if mode == .required { return (nil, nil, "--views required: \(why): \(fix)") }
            return (nil, "warning: \(why): the jail sees the host's memory, CPUs and uptime in /proc (\(fix), "
                + "or --views off to silence this)", nil)
        }
    }

    /// Inside a running jail (`root`: its root as seen from the host, /proc/PID/root): whether
    /// its lxcfs files still answer. A restarted lxcfs leaves every bound file of the old
    /// mount failing with ENOTCONN ("Transport endpoint is not connected").
    public static func jailViewIsBroken(root: String) -> Bool {
        do { _ = try fileStatusFollowingLinks(root + "/proc/meminfo") } catch { return error.errno == .socketNotConnected }
        return false
    }
}

/// `--cpuset LIST` and the set jaild picks for `--cpus F`: which CPUs the jail's programs and
/// helpers may run on, so that `nproc`, `os.cpu_count()`-style sizing by sched_getaffinity,
/// and lxcfs's cpuinfo follow the jail's share.
public enum CPUSet {
    /// "0-3,6" → [0, 1, 2, 3, 6] (sorted, no duplicates); nil for anything else.
    public static func parse(_ text: String) -> [Int]? {
        var cpus = Set<Int>()
        for part in text.trimmingWhitespace().split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = Int(bounds[0]), let high = Int(bounds.last!), low >= 0, low <= high,
                  high < 4096 else { return nil }
            for cpu in low...high { cpus.insert(cpu) }
        }
        return cpus.isEmpty ? nil : cpus.sorted()
    }

    /// [0, 1, 2, 3, 6] → "0-3,6".
    public static func format(_ cpus: [Int]) -> String {
        var ranges: [String] = []
        var index = 0
        let sorted = Array(Set(cpus)).sorted()
        while index < sorted.count {
            var end = index
            while end + 1 < sorted.count && sorted[end + 1] == sorted[end] + 1 { end += 1 }
            ranges.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
            index = end + 1
        }
        return ranges.joined(separator: ",")
    }

    /// ceil(F) CPUs of `online`, the least used by other jails first (`used`: how many jails'
    /// sets hold each CPU), ties to the lower number, so jails spread over the host's CPUs.
    /// More CPUs than the host has: all of them.
    public static func pick(cpus: Double, online: [Int], used: [Int: Int]) -> [Int] {
        let count = min(online.count, max(1, Int(cpus.rounded(.up))))
        let ranked = online.sorted { (used[$0] ?? 0, $0) < (used[$1] ?? 0, $1) }
        return Array(ranked.prefix(count)).sorted()
    }
}
