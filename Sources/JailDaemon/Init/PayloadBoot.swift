import CJail
import JailIO
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One boot of the payload (Payload.swift says who does what): "jaild: payload boot", the
/// payload's parent. Exits 0 when the payload powered off or halted, `rebootCode` when it
/// asked for a reboot, 1 otherwise.
enum PayloadBoot {
    static let rebootCode: Int32 = 2
    /// glibc's SIGRTMIN is 34 (two kernel real-time signals are its own): systemd's halt.
    static let systemdHalt: Int32 = 34 + 3
    static let notifyPath = "/run/host/notify"
    static let bootIDPath = "/run/host/boot_id"
    static let namespaceFlags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP | CLONE_NEWPID

    static func run(_ setup: PayloadKeeper.Setup, keeper: FileDescriptor) -> Never {
        setProcessTitle(ProcessTitle.payloadBoot)
        let prepared: (console: FileDescriptor, notify: FileDescriptor)
        do {
            prepared = try prepareOutside(setup)
            try enterOwnNamespaces(setup, keeper: keeper)
        } catch {
            PayloadKeeper.fail(setup, "\(error)")
        }
        keeper.closeQuietly()
        // A new user namespace came with a full bounding set: the payload's is set again here.
        do { try dropBoundingSet(keeping: PayloadKeeper.capabilityMask) } catch {
            PayloadKeeper.fail(setup, "prctl(PR_CAPBSET_DROP): \(error.errno)")
        }
        // Ours, not the payload's: its namespaces are ours but the PID one, our children's.
        // Our /proc directory is held from before the fork: once the payload has mounted its own
        // /proc over the shared mount namespace, /proc/self no longer resolves for this process
        // (it is outside that PID namespace), and a lost race left sessions no way in.
        // pid_for_children exists only once a child is in the namespace, so the files are
        // opened after the fork, through the held directory.
        let procSelf: FileDescriptor
        do { procSelf = try openDirectoryPath("/proc/self") } catch { PayloadKeeper.fail(setup, "\(error)") }
        let payload: pid_t
        do { payload = try forkProcess() } catch { PayloadKeeper.fail(setup, "fork (the payload): \(error.errno)") }
        if payload == 0 {
            // The payload's steps up to its execve (here and execPayload) keep their raw
            // calls, as code between a fork and an exec does.
            close(procSelf.rawValue)
            close(prepared.notify.rawValue)
            close(prepared.console.rawValue)
            execPayload(setup)
        }
        var namespaces: [Int32] = []
        for file in PayloadEntry.files {
            do { namespaces.append(try openFile("ns/\(file)", O_RDONLY, in: procSelf).rawValue) } catch {
                killChild(payload)  // no way in for sessions: this boot is not kept
                PayloadKeeper.fail(setup, "open(/proc/self/ns/\(file)): \(error.errno)")
            }
        }
        procSelf.closeQuietly()
        PayloadKeeper.report(setup.events, "started \(payload)", passing: namespaces)
        for fd in namespaces { closeDescriptor(fd) }
        var watch = PayloadWatch(setup: setup, payload: payload, console: prepared.console, notify: prepared.notify)
        _exit(watch.run())
    }

    /// In a mount namespace of the jail's user namespace: what the payload must not undo.
    static func prepareOutside(_ setup: PayloadKeeper.Setup) throws(SystemError) -> (console: FileDescriptor, notify: FileDescriptor) {
        // Its cgroups first: the cgroup namespace made below is rooted where it is then.
        for fd in setup.programCgroups + (setup.payloadCgroup.map { [$0] } ?? []) {
            try writeKernelFile(FileDescriptor(rawValue: fd), "0", path: "cgroup.procs")
        }
        try unshareNamespaces(CLONE_NEWNS, "CLONE_NEWNS")
        try syscall("mount(MS_PRIVATE)", path: "/") { mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) }
        let nosuidNodevNoexec = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        // The fully visible proc the payload's own needs (see Payload.swift); it shows the
        // jail's processes only to who may ptrace them, which the payload's root may not.
        try syscall("mount(proc, hidepid=invisible)", path: "/proc") {
            mount("proc", "/proc", "proc", nosuidNodevNoexec, "hidepid=invisible")
        }
        try syscall("mount(tmpfs)", path: "/run") { mount("tmpfs", "/run", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=755,size=65536k") }
        try syscall("mount(tmpfs)", path: "/tmp") { mount("tmpfs", "/tmp", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=1777,size=65536k") }
        try makeDirectory("/run/host", mode: 0o755)
        try writeBootID()
        let notify = try UnixSocket.bindDatagram(path: notifyPath)
        let (console, slavePath) = try openPseudoTerminal()
        // The loop drains both until EAGAIN: blocking, either would stop it.
        try console.setNonBlocking(true)
        try notify.setNonBlocking(true)
        // An empty file for the pty's slave to cover (one of that name is reused).
        closeDescriptor(try openFile("/dev/console", O_CREAT | O_WRONLY | O_NOFOLLOW, mode: 0o600).rawValue)
        try syscall("mount(bind)", path: "/dev/console") { mount(slavePath, "/dev/console", nil, UInt(MS_BIND), nil) }
        return (console, notify)
    }

    /// A random UUID, as the kernel's boot_id reads (a new one at each boot of the payload).
    static func writeBootID() throws(SystemError) {
        var bytes = try readFile("/dev/urandom", limit: 16)
        if bytes.count != 16 { throw SystemError("read", path: "/dev/urandom", errno: .ioError) }
        bytes[6] = bytes[6] & 0x0f | 0x40
        bytes[8] = bytes[8] & 0x3f | 0x80
        let hex = bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
        let text = hex[0..<4].joined() + "-" + hex[4..<6].joined() + "-" + hex[6..<8].joined() + "-"
            + hex[8..<10].joined() + "-" + hex[10..<16].joined() + "\n"
        try writeFile(bootIDPath, text: text, mode: 0o444)
    }

    /// The child user namespace (its maps written by the keeper), then the payload's own
    /// mount, UTS, IPC, cgroup and PID namespaces, owned by it, and its cgroup2.
    static func enterOwnNamespaces(_ setup: PayloadKeeper.Setup, keeper: FileDescriptor) throws(SystemError) {
        try unshareNamespaces(CLONE_NEWUSER, "CLONE_NEWUSER")
        // A non-dumpable process's /proc files belong to host root, so the keeper could not
        // open our uid_map: dumpable while it writes. Safe for that moment: no jail program
        // may ptrace us (its capabilities are no superset of ours, and its Landlock domain
        // keeps ptrace inside the jail's).
        try setDumpable(true)
        // Asked ("u") and answered ("m"), or a failure kept until dumpable is off again.
        let exchange: Result<[UInt8], SystemError>
        do {
            try keeper.writeFully([UInt8(ascii: "u")])
            exchange = .success(try readAll(keeper, limit: 1))
        } catch {
            exchange = .failure(SystemError("the keeper (the payload's user namespace maps): \(error.operation)", errno: error.errno))
        }
        try Hardening.forbidDumps()
        guard try exchange.get() == [UInt8(ascii: "m")] else {
            throw SystemError("the payload's user namespace has no maps", errno: .permissionDenied)
        }
        try unshareNamespaces(namespaceFlags, "payload namespaces")
        if let hostname = setup.hostname { try setHostName(hostname) }
        try syscall("mount(cgroup2)", path: "/sys/fs/cgroup") {
            mount("cgroup2", "/sys/fs/cgroup", "cgroup2", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil)
        }
    }

    /// The payload's first steps, as PID 1 of its namespace, then PATH. Never returns.
    /// A step that fails is the boot's failure, said in one line as the boot's own are
    /// (PayloadKeeper.report: init logs it, and a start waiting for READY=1 fails with it),
    /// and the payload's status 127.
    static func execPayload(_ setup: PayloadKeeper.Setup) -> Never {
        func die(_ what: String) -> Never {
            PayloadKeeper.report(setup.events, "error \(what): \(Errno(rawValue: errno))")
            _exit(127)
        }
        cj_reset_signals()
        let nosuidNodevNoexec = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if mount("proc", "/proc", "proc", nosuidNodevNoexec, nil) < 0 { die("mount /proc") }
        if mount(bootIDPath, "/proc/sys/kernel/random/boot_id", nil, UInt(MS_BIND), nil) < 0 { die("bind boot_id") }
        // /proc/sys read-only: its host-wide settings are not the payload's (and systemd then
        // skips systemd-sysctl and binfmt_misc, which would fail).
        if mount("/proc/sys", "/proc/sys", nil, UInt(MS_BIND | MS_REC), nil) < 0 { die("bind /proc/sys") }
        if mount(nil, "/proc/sys", nil, UInt(MS_BIND | MS_REMOUNT | MS_RDONLY) | nosuidNodevNoexec, nil) < 0 {
            die("remount /proc/sys read-only")
        }
        // A new session, which no terminal controls yet: the console becomes its terminal.
        if setsid() < 0 { die("setsid") }
        let console = open("/dev/console", O_RDWR)
        if console < 0 { die("open /dev/console") }
        // The console as the controlling terminal of the payload's init, as a booted system's
        // init has it: one that cannot be is said, not skipped.
        if ioctl(console, UInt(TIOCSCTTY), 0) < 0 { die("ioctl(TIOCSCTTY) /dev/console (a controlling terminal)") }
        for target: Int32 in [0, 1, 2] where dup2(console, target) < 0 { die("dup2 /dev/console") }
        if console > 2 { close(console) }
        if chdir("/") < 0 { die("chdir /") }
        let environment = ["container=jail", "NOTIFY_SOCKET=\(notifyPath)", "TERM=vt220",
                           "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        var argv: [UnsafeMutablePointer<CChar>?] = setup.command.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        execve(setup.command[0], &argv, &envp)
        die("execve \(setup.command[0])")
    }
}

/// The boot's loop while the payload runs: console → jaild's log, notify → init, init's
/// halt and kill → the payload.
struct PayloadWatch {
    let setup: PayloadKeeper.Setup
    let payload: pid_t
    let console: FileDescriptor
    let notify: FileDescriptor
    var consoleLine: [UInt8] = []
    var halted = false
    var commandsOpen = true
    var isSystemd = false

    /// The boot's status: PayloadBoot.rebootCode, 0 or 1 from `ended`; 1 when the loop itself
    /// fails (said in one line to init: the payload is then left to the jail's stop).
    mutating func run() -> Int32 {
        isSystemd = Self.namesSystemd(setup.command[0])
        do {
            let signals = try SignalDescriptor([SIGCHLD])
            var poller = Poller()
            while true {
                poller.reset()
                let consoleReady = poller.add(console.rawValue, read: true)
                let notifyReady = poller.add(notify.rawValue, read: true)
                let signalled = poller.add(signals.fd.rawValue, read: true)
                let commanded = commandsOpen ? poller.add(setup.commands, read: true) : nil
                _ = try poller.wait()
                if poller.readable(consoleReady) { relayConsole() }
                if poller.readable(notifyReady) { readNotifications() }
                if let commanded, poller.readable(commanded) { obey() }
                if poller.readable(signalled) {
                    _ = try signals.receive()
                    if let status = exitedChildStatus(payload) { return ended(status) }
                }
            }
        } catch {
            PayloadKeeper.report(setup.events, "error the payload's boot stopped watching it: \(error)")
            return 1
        }
    }

    /// systemd is told by its name (/sbin/init is a link to it on Debian): it halts on
    /// SIGRTMIN+3; any other init gets SIGTERM (sysvinit's and busybox's are TERM-then-KILL).
    static func namesSystemd(_ path: String) -> Bool {
        // A path that does not resolve (missing: its execve fails) is judged by its own name.
        let resolved: String
        do { resolved = try canonicalPath(path) } catch { resolved = path }
        return resolved.hasSuffix("/systemd")
    }

    mutating func ended(_ status: Int32) -> Int32 {
        relayConsole()
        flushConsole()
        // In a PID namespace reboot(2) ends its init by a signal: SIGHUP for a restart, SIGINT
        // for power-off and halt (pid_namespace.c, reboot_pid_ns).
        let signaled = status & 0x7f
        let how: String
        let code: Int32
        if signaled == SIGHUP && !halted {
            how = "reboot"
            code = PayloadBoot.rebootCode
        } else if signaled == SIGINT || (halted && signaled == 0) || status == 0 {
            how = "poweroff"
            code = 0
        } else {
            how = "status \(exitCode(ofStatus: status))"
            code = 1
        }
        PayloadKeeper.report(setup.events, "ended \(how)")
        return code
    }

    mutating func obey() {
        let command: [UInt8]?
        do { command = try FileDescriptor(rawValue: setup.commands).readChunk(max: 1) } catch { command = [] }
        guard let command else { return }  // EINTR: poll again
        guard let byte = command.first else {
            // An end of file (init gone) or an error: no more commands, the payload runs on.
            commandsOpen = false
            return
        }
        switch byte {
        case UInt8(ascii: "h"):
            halted = true
            do { try sendSignal(isSystemd ? PayloadBoot.systemdHalt : SIGTERM, to: payload) } catch {
                PayloadKeeper.report(setup.events, "error the payload was not told to halt: \(error)")
            }
        case UInt8(ascii: "k"):
            halted = true
            killChild(payload)
        default:
            break
        }
    }

    mutating func readNotifications() {
        // One datagram per read; EAGAIN (nil) once drained. An error ends this round: the next
        // poll says whether there is more.
        while let datagram = try? notify.readChunk(max: 4096), !datagram.isEmpty {
            let text = String(decoding: datagram, as: UTF8.self)
            for line in text.split(separator: "\n") {
                if line == "READY=1" { PayloadKeeper.report(setup.events, "ready") }
                if line == "STOPPING=1" { PayloadKeeper.report(setup.events, "stopping") }
            }
        }
    }

    mutating func relayConsole() {
        // Until EAGAIN (nil); EIO once the payload's last holder of the console is gone.
        while let chunk = try? console.readChunk(max: 4096), !chunk.isEmpty {
            for byte in chunk {
                if byte == UInt8(ascii: "\n") {
                    flushConsole()
                } else if byte != UInt8(ascii: "\r") && consoleLine.count < 2048 {
                    consoleLine.append(byte)
                }
            }
        }
    }

    /// One line of the payload's console in jaild's log (escaped there, as every line is).
    mutating func flushConsole() {
        guard !consoleLine.isEmpty else { return }
        log.info("payload console: \(String(decoding: consoleLine, as: UTF8.self))")
        consoleLine.removeAll(keepingCapacity: true)
    }
}
