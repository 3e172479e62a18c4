import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// `--memory`, `--pids`, `--cpus`: what the jail's programs may use together.
public struct CgroupLimits: Equatable, Sendable {
    public var memory: UInt64?
    public var pids: Int?
    /// CPUs' worth of time per period, e.g. 0.5 or 2.
    public var cpus: Double?
    /// The CPUs the programs and helpers may run on (`--cpuset`, or ceil(--cpus) picked at
    /// start: Supervisor.pickCPUs), so that nproc and sched_getaffinity follow `--cpus`.
    public var cpuset: [Int]?

    public init(memory: UInt64? = nil, pids: Int? = nil, cpus: Double? = nil, cpuset: [Int]? = nil) {
        self.memory = memory
        self.pids = pids
        self.cpus = cpus
        self.cpuset = cpuset
    }

    static let cpuPeriod = 100_000

    /// The session helpers' memory, together, beside the programs' `--memory`: a quarter of
    /// it, at least 32 MiB. A helper's buffers are bounded (at most about 2.5 MiB, see
    /// JailIO/Relay.swift; its code and what it shares with init stay charged to init), so a
    /// jail cannot make its helpers hold the host's memory outside every limit.
    var sessionMemory: UInt64? { memory.map { max(32 << 20, $0 / 4) } }

    /// The limits of the `sessions` cgroup (nil when there are none): memory, and `--cpus` as
    /// it is. A helper's work grows with what its program writes to a host client: without a
    /// CPU limit of their own, helpers relaying the output of programs held to `--cpus 0.1`
    /// used 30–50 % of a CPU. A quota of its own, rather than one parent quota over programs
    /// and helpers, because init is not limited (a tenant's load must never slow the stop or
    /// the operator's way in) and init's cgroup is the programs' and helpers' sibling; it is
    /// the same in cgroup v1's `cpu` hierarchy. So the jail's programs and its helpers each
    /// get `--cpus`, the jail at most twice that.
    var sessionLimits: CgroupLimits? {
        guard sessionMemory != nil || cpus != nil || cpuset != nil else { return nil }
        return CgroupLimits(memory: sessionMemory, cpus: cpus, cpuset: cpuset)
    }

    /// The limits of `jail/NAME` itself, the cgroup lxcfs describes (it reads the cgroup of
    /// the jail's PID 1, and looks through a leaf named `init.scope` to its parent, as for a
    /// systemd container): `--memory` and the cpuset, so `free` shows `--memory` as the total
    /// and the whole jail's usage, and cpuinfo the jail's CPUs. The programs keep their own
    /// limits (and the helpers theirs); init is under this one but never the OOM killer's
    /// choice (oom_score_adj -1000): at the jail's limit the kernel reclaims or kills a
    /// tenant's program for init's or a new helper's page.
    var rootLimits: CgroupLimits { CgroupLimits(memory: memory, cpuset: cpuset) }

    /// Controller → the flag that asked for it (for error messages).
    var controllers: [(String, String)] {
        var out: [(String, String)] = []
        if memory != nil { out.append(("memory", "--memory")) }
        if pids != nil { out.append(("pids", "--pids")) }
        if cpus != nil { out.append(("cpu", "--cpus")) }
        if cpuset != nil { out.append(("cpuset", cpus == nil ? "--cpuset" : "--cpus")) }
        return out
    }

    /// The files each limit goes to; optional files (swap) are skipped where missing.
    func files(unified: Bool, controllers: [String]) -> [(file: String, value: String, optional: Bool)] {
        var out: [(String, String, Bool)] = []
        if let memory, controllers.contains("memory") {
            if unified {
                out += [("memory.max", "\(memory)", false), ("memory.swap.max", "0", true)]
            } else {
                out += [("memory.limit_in_bytes", "\(memory)", false), ("memory.memsw.limit_in_bytes", "\(memory)", true)]
            }
        }
        if let pids, controllers.contains("pids") { out.append(("pids.max", "\(pids)", false)) }
        if let cpuset, controllers.contains("cpuset") {
            // v1 takes no task into a cpuset without memory nodes: the parent's (JailCgroups).
            out.append(("cpuset.cpus", CPUSet.format(cpuset), false))
        }
        if let cpus, controllers.contains("cpu") {
            let quota = max(1000, Int(cpus * Double(Self.cpuPeriod)))
            if unified {
                out.append(("cpu.max", "\(quota) \(Self.cpuPeriod)", false))
            } else {
                out += [("cpu.cfs_period_us", "\(Self.cpuPeriod)", false), ("cpu.cfs_quota_us", "\(quota)", false)]
            }
        }
        return out
    }

    func apply(to directory: String, unified: Bool, controllers: [String]) throws(JailError) {
        for (file, value, optional) in files(unified: unified, controllers: controllers) {
            let path = "\(directory)/\(file)"
            if optional && !somethingExists(at: path) { continue }
            try JailCgroups.writeControl(value, to: path)
        }
    }
}
