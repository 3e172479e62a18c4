import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What the supervisor keeps of a freshly cloned init.
struct StartedInit {
    let pid: pid_t
    let log: FileDescriptor
    let bootOutput: FileDescriptor
    /// The exit status of `--rc`, which init ran before it reported ready ("R" + status).
    var rcStatus: Int32? = nil
}

extension Supervisor {
    /// clone(2) into the new namespaces; the child becomes init and never returns here.
    func cloneInit(listener: FileDescriptor, control: FileDescriptor?, cgroups: JailCgroups?) throws(JailError) -> StartedInit {
        let threads = threadCount()
        guard threads == 1 else { throw .threaded(threads) }
        let programCgroups = try cgroups?.openProgramProcs() ?? []
        defer { for fd in programCgroups { close(fd) } }
        let sessionCgroups = try cgroups?.openSessionProcs() ?? []
        defer { for fd in sessionCgroups { close(fd) } }
        let ready = try Pipe.make()
        let logs = try Pipe.make()
        let lifeline = try Pipe.make()
        let boot = try Pipe.make()
        var flags = UInt(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC)
        if configuration.rootless { flags |= UInt(CLONE_NEWUSER) }
        let pid = cj_clone(flags)
        if pid < 0 {
            for p in [ready, logs, lifeline, boot] { p.close() }
            if configuration.rootless {
                throw .rootless("cannot create a user namespace: \(String(cString: strerror(errno))) "
                    + "(see user.max_user_namespaces; or run jaild as root)")
            }
            throw .system(.last("clone"))
        }
        if pid == 0 {
            let channels = InitChannels(listener: listener, ready: ready.write, lifeline: lifeline.read, log: logs.write,
                                        bootOutput: boot.write, programCgroups: programCgroups,
                                        adoption: control.map { ($0, logs.read, boot.read) },
                                        sessionCgroups: sessionCgroups)
            Init.run(configuration: configuration, account: account, channels: channels)
        }
        ready.write.closeQuietly()
        logs.write.closeQuietly()
        lifeline.read.closeQuietly()
        boot.write.closeQuietly()
        // Into its cgroup and out of the OOM killer's reach before it serves anyone; if this
        // fails, closing `ready` unread makes init's report fail and the start is undone.
        do {
            if configuration.rootless { try mapUser(into: pid) }
            try cgroups?.attachInit(pid)
            // Needs CAP_SYS_RESOURCE, which some hosts (containers) withhold: then the memory
            // limit, which init is outside of, is its protection.
            if !configuration.rootless {
                do { try JailCgroups.write("-1000", to: "/proc/\(pid)/oom_score_adj") } catch {
                    log.debug("init stays killable by the OOM killer: \(error)")
                }
            }
        } catch {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            for p in [ready, logs, lifeline, boot] { p.close() }
            throw error
        }
        // If init already failed its setup, this finds the pipe closed; its reason is in `ready`.
        try? lifeline.write.writeFully(Array("G".utf8))
        // The lifeline's write end stays open (CLOEXEC) for the supervisor's whole life.
        var message: [UInt8] = []
        while let chunk = try? ready.read.readChunk(max: 4096), !chunk.isEmpty {
            message += chunk
            if message.first == UInt8(ascii: "R") { break }
        }
        ready.read.closeQuietly()
        if message.first == UInt8(ascii: "R") {
            return StartedInit(pid: pid, log: logs.read, bootOutput: boot.read,
                               rcStatus: Int32(String(decoding: message.dropFirst(), as: UTF8.self)))
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        logs.close()
        boot.read.closeQuietly()
        lifeline.write.closeQuietly()
        if message.first == UInt8(ascii: "E") { throw .startFailed(String(decoding: message.dropFirst(), as: UTF8.self)) }
        throw .startFailed("the jail's init exited during setup (status \(cj_status_to_code(status)))")
    }

    /// Rootless: the user's own uid and gid, and nothing else, become the jail's (its own, or
    /// 0 with --map-root). setgroups is denied first, as the kernel requires for a user.
    func mapUser(into pid: pid_t) throws(JailError) {
        let inside = Rootless.insideIDs(mapRoot: configuration.mapRoot)
        try JailCgroups.write("deny", to: "/proc/\(pid)/setgroups")
        try JailCgroups.write("\(inside.uid) \(getuid()) 1", to: "/proc/\(pid)/uid_map")
        try JailCgroups.write("\(inside.gid) \(getgid()) 1", to: "/proc/\(pid)/gid_map")
    }
}

struct Pipe {
    let read: FileDescriptor
    let write: FileDescriptor

    static func make() throws(JailError) -> Pipe {
        var ends: [Int32] = [0, 0]
        try JailError.wrap { () throws(SystemError) in try syscall("pipe2") { cj_pipe(&ends) } }
        return Pipe(read: FileDescriptor(rawValue: ends[0]), write: FileDescriptor(rawValue: ends[1]))
    }

    func close() {
        read.closeQuietly()
        write.closeQuietly()
    }
}
