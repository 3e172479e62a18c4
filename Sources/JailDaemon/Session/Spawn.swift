import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What every program of the jail gets, made once by init and handed to each helper it forks:
/// its cgroups, rlimits and ambient capabilities.
struct ProgramSettings {
    var cgroupProcs: [Int32] = []
    var resourceLimits: [ResourceLimit] = []
    var ambientCapabilities: UInt64 = 0
    /// Rootless jails cannot call setgroups (the kernel denies it to a user's namespace).
    var supplementaryGroups = true
    /// init was taken out of the OOM killer's reach; its programs must not inherit that.
    var resetOOMScore = true
}

/// A program to start as the jail user. Everything is built here, in Swift, before the fork;
/// the child in between fork and exec is C (CJail/spawn.c).
struct SpawnRequest {
    var command: SessionCommand
    var account: Account
    /// Become fds 0, 1 and 2.
    var stdio: [Int32]
    /// stdio[0] is a pty slave to make the controlling terminal of the new session.
    var controllingTerminal: Bool
}

struct SpawnError: Error, CustomStringConvertible {
    let step: Int32
    let errno: Int32
    let request: SpawnRequest

    var description: String {
        let reason = Errno(rawValue: errno).description
        let a = request.account
        switch UInt32(step) {
        case CJ_STEP_EXEC.rawValue: return "cannot run \(request.command.path): \(reason)"
        case CJ_STEP_SETUID.rawValue: return "setuid(\(a.uid)): \(reason)"
        case CJ_STEP_SETGID.rawValue: return "setgid(\(a.gid)): \(reason)"
        case CJ_STEP_SETGROUPS.rawValue: return "setgroups: \(reason)"
        case CJ_STEP_TIOCSCTTY.rawValue: return "cannot make the terminal controlling: \(reason)"
        case CJ_STEP_SETSID.rawValue: return "setsid: \(reason)"
        case CJ_STEP_FORK.rawValue: return "fork: \(reason)"
        case CJ_STEP_CGROUP.rawValue: return "cannot join the jail's cgroup: \(reason)"
        case CJ_STEP_RLIMIT.rawValue: return "setrlimit: \(reason)"
        case CJ_STEP_CAPS.rawValue: return "cannot grant the jail's capabilities: \(reason)"
        default: return "cannot start the session: \(reason)"
        }
    }
}

/// Starts the program in its own session; returns its pid (also its process group).
func spawn(_ request: SpawnRequest, settings: ProgramSettings) throws(SpawnError) -> pid_t {
    let argv = CStringArray(request.command.argumentBytes)
    let envp = CStringArray(request.command.environmentBytes)
    defer {
        argv.free()
        envp.free()
    }
    var step: Int32 = 0
    var error: Int32 = 0
    let pid = request.command.path.withCString { path in
        request.account.home.withCString { home in
            request.account.groups.withUnsafeBufferPointer { groups in
                var c = cj_spawn_request()
                c.path = path
                c.argv = UnsafePointer(argv.pointers)
                c.envp = UnsafePointer(envp.pointers)
                c.stdio = (request.stdio[0], request.stdio[1], request.stdio[2])
                c.controlling_tty = request.controllingTerminal ? 1 : 0
                c.uid = request.account.uid
                c.gid = request.account.gid
                c.groups = groups.baseAddress
                c.ngroups = groups.count
                c.skip_setgroups = settings.supplementaryGroups ? 0 : 1
                c.directory = home
                let limits = settings.resourceLimits.map { cj_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) }
                return settings.cgroupProcs.withUnsafeBufferPointer { procs in
                    limits.withUnsafeBufferPointer { rlimits in
                        c.cgroup_procs = procs.baseAddress
                        c.ncgroup_procs = Int32(procs.count)
                        c.reset_oom_score = settings.resetOOMScore ? 1 : 0
                        c.rlimits = rlimits.baseAddress
                        c.nrlimits = Int32(rlimits.count)
                        c.ambient_caps = settings.ambientCapabilities
                        return cj_spawn(&c, &step, &error)
                    }
                }
            }
        }
    }
    if pid < 0 { throw SpawnError(step: step, errno: error, request: request) }
    return pid
}

/// A NULL-terminated array of C strings that outlives a closure (for execve), built from
/// byte strings: argv and the environment are bytes, not necessarily UTF-8.
struct CStringArray {
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    let count: Int

    init(_ strings: [[UInt8]]) {
        count = strings.count
        pointers = .allocate(capacity: strings.count + 1)
        for (i, s) in strings.enumerated() {
            // The decoder refused NUL bytes, so each string ends exactly at its terminator.
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: s.count + 1)
            for (j, byte) in s.enumerated() { copy[j] = CChar(bitPattern: byte) }
            copy[s.count] = 0
            pointers[i] = copy
        }
        pointers[strings.count] = nil
    }

    init(_ strings: [String]) {
        self.init(strings.map { Array($0.utf8) })
    }

    func free() {
        for i in 0..<count { pointers[i]?.deallocate() }
        pointers.deallocate()
    }
}
