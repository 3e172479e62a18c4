import JailSystem

/// Where this host mounts its cgroup hierarchies, from /proc/self/mountinfo: the unified (v2)
/// hierarchy, if any, and each v1 controller's hierarchy.
public struct CgroupMounts: Equatable, Sendable {
    public var unified: String?
    /// Controller name (memory, pids, cpu, …) → mount point of its v1 hierarchy.
    public var v1: [String: String] = [:]

    public init(unified: String? = nil, v1: [String: String] = [:]) {
        self.unified = unified
        self.v1 = v1
    }

    public static func parse(mountinfo: String) -> CgroupMounts {
        var mounts = CgroupMounts()
        for entry in MountInfoEntry.parseAll(mountinfo) {
            switch entry.fsType {
            case "cgroup2":
                if mounts.unified == nil { mounts.unified = entry.mountPoint }
            case "cgroup":
                for option in entry.superOptions.split(separator: ",") where knownControllers.contains(String(option)) {
                    mounts.v1[String(option)] = entry.mountPoint
                }
            default:
                continue
            }
        }
        return mounts
    }

    /// An array: a Set's first use is a tenth of a millisecond of the supervisor's start (the
    /// Swift runtime's lookups of its type).
    static let knownControllers: [String] = ["memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "io", "devices", "freezer"]
}
