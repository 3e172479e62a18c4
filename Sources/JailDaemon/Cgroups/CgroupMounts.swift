import JailSystem

/// Where this host mounts its cgroup hierarchies, from /proc/self/mountinfo: the unified (v2)
/// hierarchy, if any, and each v1 controller's hierarchy.
public struct CgroupMounts: Equatable, Sendable {
    public var unified: String?
    /// Controller name (memory, pids, cpu, …) → mount point of its v1 hierarchy.
    public var v1: ControllerMounts = [:]

    public init(unified: String? = nil, v1: ControllerMounts = [:]) {
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

/// Controller → mount point, for the few v1 hierarchies a host has: a list, not a Dictionary,
/// whose first use in a process costs a start the Swift runtime's instantiation of its storage
/// type (0.12 ms of the supervisor's, measured with perf on the 2-core test VM).
public struct ControllerMounts: Equatable, Sendable, ExpressibleByDictionaryLiteral {
    public private(set) var pairs: [(controller: String, mount: String)] = []

    public init(dictionaryLiteral elements: (String, String)...) {
        for (controller, mount) in elements { self[controller] = mount }
    }

    public subscript(controller: String) -> String? {
        get { pairs.first { $0.controller == controller }?.mount }
        set {
            pairs.removeAll { $0.controller == controller }
            if let newValue { pairs.append((controller, newValue)) }
        }
    }

    public var isEmpty: Bool { pairs.isEmpty }
    /// The mount points, each once, sorted.
    public var mounts: [String] {
        var seen: [String] = []
        for pair in pairs where !seen.contains(pair.mount) { seen.append(pair.mount) }
        return seen.sorted()
    }

    public func controllers(mountedAt mount: String) -> [String] {
        pairs.filter { $0.mount == mount }.map(\.controller)
    }

    /// The same controllers at the same mount points, in any order.
    public static func == (a: ControllerMounts, b: ControllerMounts) -> Bool {
        a.pairs.count == b.pairs.count && a.pairs.allSatisfy { b[$0.controller] == $0.mount }
    }
}
