import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `--init PATH`: the distribution's init (systemd) as PID 1 of a nested PID namespace below
/// jaild's init, which stays the jail's PID 1 and serves the socket.
///
/// Three processes of ours, forked by init before it hardens itself (its seccomp filter
/// forbids mounts and new namespaces, and any Landlock domain with file-system rules forbids
/// mounts: an init must mount, and systemd takes EPERM for "container, skip the sandboxing"):
///
/// - the **keeper** "jaild: payload" (`PayloadKeeper.run`): forked once, puts the payload's
///   profile on itself (nspawn's bounding set, the payload's seccomp filter, a Landlock domain
///   with the signal and abstract-socket scopes only, which leaves mounts alone), then boots
///   the payload, and boots it again after a reboot. It writes the user-namespace maps.
/// - the **boot** "jaild: payload boot" (`PayloadBoot.run`): one per boot. In a mount
///   namespace still owned by the jail's user namespace (so everything it mounts is locked
///   against the payload) it mounts a proc of the jail's PID namespace with `hidepid=invisible`
///   and nothing over it (the kernel lets a user namespace mount proc only while a fully
///   visible one is in its mount namespace; the jail's own /proc has masks over it), fresh
///   /run and /tmp, the notify socket and boot id in /run/host, and the pty on /dev/console.
///   Then a child user namespace mirroring the jail's ids, and in it new mount, UTS, IPC,
///   cgroup (rooted at the delegated `programs/payload`) and PID namespaces, cgroup2 on
///   /sys/fs/cgroup; it forks the payload and stays its parent: relays its console to jaild's
///   log, reads its notify socket, reports to init, halts it when init asks.
/// - the **payload**: PID 1 of the new PID namespace; mounts its own /proc, /proc/sys
///   read-only, the boot id over /proc/sys/kernel/random/boot_id, takes /dev/console, and
///   execs PATH with `container=jail` and `NOTIFY_SOCKET=/run/host/notify`.
///
/// Events to init are lines on a seqpacket socket: `started PID` (with the payload's user,
/// mount, PID, UTS, IPC and cgroup namespaces as descriptors, which the session helpers join:
/// a pidfd would not do, setns on one needs ptrace access, which the Landlock domains of the
/// jail and the payload deny each other), `ready`, `ended poweroff|reboot|STATUS`.
/// Commands from init are bytes on another: `h` halt (SIGRTMIN+3 to systemd, SIGTERM to another
/// init), `k` kill. init cannot signal the payload itself: its Landlock domain's signal scope
/// keeps its signals inside its own domain, and the payload is outside it.
enum PayloadKeeper {
    /// What init keeps of the keeper.
    struct Started {
        let pid: pid_t
        /// Read end of the events pipe (lines).
        let events: FileDescriptor
        /// Write end of the commands pipe.
        let commands: FileDescriptor
    }

    /// What the boot needs from init: the cgroups to join and the jail's ids.
    struct Setup {
        let command: [String]
        let programCgroups: [Int32]
        /// `programs/payload/cgroup.procs` of the unified hierarchy, delegated to the jail's root.
        let payloadCgroup: Int32?
        let uid: UInt32
        let gid: UInt32
        let hostname: String?
        let allowAio: Bool
        let events: Int32
        let commands: Int32
    }

    /// systemd's capabilities in nspawn (systemd-nspawn(1), "--capability"): CHOWN,
    /// DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
    /// LINUX_IMMUTABLE, NET_BIND_SERVICE, NET_BROADCAST, NET_RAW, IPC_OWNER, SYS_CHROOT,
    /// SYS_PTRACE, SYS_ADMIN, SYS_BOOT, SYS_NICE, SYS_RESOURCE, SYS_TTY_CONFIG, MKNOD, LEASE,
    /// AUDIT_WRITE, AUDIT_CONTROL, SETFCAP. All of them act in the payload's user namespace
    /// only; the network ones reach nothing of the host's network, owned by the host's.
    static let capabilities: [Int] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 18, 19, 21, 22, 23, 24, 26, 27, 28, 29, 30, 31]

    static var capabilityMask: UInt64 { capabilities.reduce(UInt64(0)) { $0 | (1 << UInt64($1)) } }

    /// Forks the keeper. Runs in init, before it hardens itself.
    static func start(_ configuration: JailConfiguration, account: Account, programCgroups: [Int32],
                      payloadCgroup: Int32?) throws(JailError) -> Started {
        guard let command = configuration.payload else { throw .startFailed("no --init command") }
        // Events are datagrams (one line each) on a seqpacket pair: `started` carries the
        // payload's namespaces as descriptors.
        let events: (ours: FileDescriptor, keepers: FileDescriptor)
        do { events = try UnixSocket.pair() } catch {
            throw .system(SystemError("socketpair (the payload's events)", errno: error.errno))
        }
        let commands: Pipe
        do { commands = try Pipe.make() } catch {
            events.ours.closeQuietly()
            events.keepers.closeQuietly()
            throw .system(error)
        }
        // init is single-threaded (DESIGN.md): the keeper is a whole process of jaild, not a
        // step on the way to an exec.
        let pid: pid_t
        do { pid = try forkProcess() } catch {
            events.keepers.closeQuietly()
            commands.read.closeQuietly()
            events.ours.closeQuietly()
            commands.write.closeQuietly()
            throw .system(SystemError("fork (the payload's keeper)", errno: error.errno))
        }
        if pid == 0 {
            events.ours.closeQuietly()
            let setup = Setup(command: command, programCgroups: programCgroups, payloadCgroup: payloadCgroup,
                              uid: account.uid, gid: account.gid, hostname: configuration.hostname,
                              allowAio: configuration.allowAio, events: events.keepers.rawValue, commands: commands.read.rawValue)
            run(setup)
        }
        events.keepers.closeQuietly()
        commands.read.closeQuietly()
        do { try events.ours.setNonBlocking(true) } catch {
            // A blocking read would stop init's loop: the keeper goes, the start fails.
            killChild(pid)
            events.ours.closeQuietly()
            commands.write.closeQuietly()
            throw .system(SystemError("fcntl(O_NONBLOCK) (the payload's events)", errno: error.errno))
        }
        return Started(pid: pid, events: events.ours, commands: commands.write)
    }

    /// The keeper's life: the payload's profile, then boot after boot until one ends without
    /// a reboot. Never returns.
    static func run(_ setup: Setup) -> Never {
        setProcessTitle(ProcessTitle.payload)
        closeDescriptors(keeping: [setup.events, setup.commands] + setup.programCgroups + (setup.payloadCgroup.map { [$0] } ?? []))
        // Root inside must not ptrace the keeper or read its memory (it holds the capabilities).
        do { try Hardening.forbidDumps() } catch { fail(setup, "\(error)") }
        do { try dropBoundingSet(keeping: capabilityMask) } catch { fail(setup, "prctl(PR_CAPBSET_DROP): \(error.errno)") }
        do { try installPayloadSeccompFilter(allowAio: setup.allowAio) } catch { fail(setup, "seccomp: \(error.errno)") }
        // The scopes without file-system rules: mounts stay possible, the host's abstract unix
        // sockets and processes outside the payload do not (docs/security.md).
        if let abi = landlockABI(), abi >= Hardening.scopeABI {
            do { try restrictToLandlockScope() } catch { fail(setup, "landlock_restrict_self (scopes): \(error.errno)") }
        }
        while true {
            // One byte each way (PayloadBoot.enterOwnNamespaces): a message of a pair is one byte.
            let sync: (keepers: FileDescriptor, boots: FileDescriptor)
            do { sync = try UnixSocket.pair() } catch { fail(setup, "\(error)") }
            let boot: pid_t
            do { boot = try forkProcess() } catch {
                sync.keepers.closeQuietly()
                sync.boots.closeQuietly()
                fail(setup, "fork (the payload's boot): \(error.errno)")
            }
            if boot == 0 {
                sync.keepers.closeQuietly()
                PayloadBoot.run(setup, keeper: sync.boots)
            }
            sync.boots.closeQuietly()
            writeMaps(setup, boot: boot, sync: sync.keepers)
            sync.keepers.closeQuietly()
            guard let status = waitForChild(boot) else { fail(setup, "waitpid(the payload's boot \(boot)): not a child") }
            // 2: the payload asked for a reboot; anything else ends the keeper.
            let code = exitCode(ofStatus: status)
            if code != PayloadBoot.rebootCode { _exit(code) }
        }
    }

    /// The child user namespace's maps, written from the jail's (the boot cannot write its own):
    /// every id of the jail as itself, so files keep their owners. setgroups stays allowed
    /// (written by the parent namespace's root), as in the jail.
    static func writeMaps(_ setup: Setup, boot: pid_t, sync: FileDescriptor) {
        // Nothing (an end of file, or an error) when the boot failed before its namespace: it
        // said why itself.
        let asked: [UInt8]
        do { asked = try readAll(sync, limit: 1) } catch { return }
        guard asked.count == 1 else { return }
        var answer = UInt8(ascii: "m")
        do {
            try writeKernelFile("/proc/\(boot)/uid_map", mirrorMap(keeping: setup.uid))
            try writeKernelFile("/proc/\(boot)/gid_map", mirrorMap(keeping: setup.gid))
        } catch {
            report(setup.events, "error \(error)")
            answer = UInt8(ascii: "x")
        }
        // Without the answer the boot fails with "no maps"; this line says why.
        do { try sync.writeFully([answer]) } catch { report(setup.events, "error the payload's boot was not told of its maps: \(error)") }
    }

    /// The jail's ids as themselves, extent by extent as the jail's own map has them
    /// (UserRange.mapLines): the kernel maps each extent of a child's map into one extent of
    /// its parent's, so "0 0 65535" across the user's own id is refused (EPERM).
    static func mirrorMap(keeping id: UInt32) -> String {
        UserRange.mapLines(keeping: id, start: 0)
    }

    /// One event to init. A lost one (init gone, its socket full) goes to the log instead:
    /// init then learns of the boot from its end (the keeper's exit), not from this line.
    static func report(_ events: Int32, _ line: String, passing fds: [Int32] = []) {
        do { _ = try UnixSocket.send(FileDescriptor(rawValue: events), Array((line + "\n").utf8), passing: fds) } catch {
            log.error("payload: the event '\(line)' did not reach init: \(error)")
        }
    }

    static func fail(_ setup: Setup, _ reason: String) -> Never {
        report(setup.events, "error \(reason)")
        _exit(1)
    }
}
