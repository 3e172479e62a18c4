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
        for line in mountinfo.split(separator: "\n") {
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let fields = halves[0].split(separator: " ")
            let tail = halves[1].split(separator: " ")
            guard fields.count >= 5, tail.count >= 3 else { continue }
            let mountPoint = unescape(fields[4])
            switch tail[0] {
            case "cgroup2":
                if mounts.unified == nil { mounts.unified = mountPoint }
            case "cgroup":
                for option in tail[2].split(separator: ",") where knownControllers.contains(String(option)) {
                    mounts.v1[String(option)] = mountPoint
                }
            default:
                continue
            }
        }
        return mounts
    }

    static let knownControllers: Set<String> = ["memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "io", "devices", "freezer"]

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    static func unescape(_ field: Substring) -> String {
        var out = ""
        var i = field.startIndex
        while i < field.endIndex {
            if field[i] == "\\", let end = field.index(i, offsetBy: 4, limitedBy: field.endIndex),
               let code = UInt8(field[field.index(after: i)..<end], radix: 8) {
                out.append(Character(Unicode.Scalar(code)))
                i = end
            } else {
                out.append(field[i])
                i = field.index(after: i)
            }
        }
        return out
    }
}
