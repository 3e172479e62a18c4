import CJail
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

    static func run(_ setup: PayloadKeeper.Setup, keeper: Int32) -> Never {
        cj_set_proctitle("jaild: payload boot")
        let prepared: (console: Int32, notify: Int32)
        do {
            prepared = try prepareOutside(setup)
            try enterOwnNamespaces(setup, keeper: keeper)
        } catch {
            PayloadKeeper.fail(setup, "\(error)")
        }
        close(keeper)
        // A new user namespace came with a full bounding set: the payload's is set again here.
        if cj_drop_bounding_set(PayloadKeeper.capabilityMask) != 0 {
            PayloadKeeper.fail(setup, "prctl(PR_CAPBSET_DROP): \(Errno(rawValue: errno))")
        }
        // Ours, not the payload's: its namespaces are ours but the PID one, our children's.
        // Our /proc directory is held from before the fork: once the payload has mounted its own
        // /proc over the shared mount namespace, /proc/self no longer resolves for this process
        // (it is outside that PID namespace), and a lost race left sessions no way in.
        // pid_for_children exists only once a child is in the namespace, so the files are
        // opened after the fork, through the held directory.
        let procSelf = open("/proc/self", CJ_O_PATH | O_DIRECTORY | O_CLOEXEC)
        if procSelf < 0 { PayloadKeeper.fail(setup, "open(/proc/self): \(Errno(rawValue: errno))") }
        let payload = fork()
        if payload == 0 {
            close(procSelf)
            close(prepared.notify)
            close(prepared.console)
            execPayload(setup)
        }
        if payload < 0 { PayloadKeeper.fail(setup, "fork (the payload): \(Errno(rawValue: errno))") }
        let namespaces = PayloadEntry.files.map { openat(procSelf, "ns/\($0)", O_RDONLY | O_CLOEXEC) }
        if let missing = zip(PayloadEntry.files, namespaces).first(where: { $0.1 < 0 }) {
            let reason = "open(/proc/self/ns/\(missing.0)): \(Errno(rawValue: errno))"
            kill(payload, SIGKILL)  // no way in for sessions: this boot is not kept
            PayloadKeeper.fail(setup, reason)
        }
        close(procSelf)
        PayloadKeeper.report(setup.events, "started \(payload)", passing: namespaces.filter { $0 >= 0 })
        for fd in namespaces where fd >= 0 { close(fd) }
        var watch = PayloadWatch(setup: setup, payload: payload, console: prepared.console, notify: prepared.notify)
        _exit(watch.run())
    }

    /// In a mount namespace of the jail's user namespace: what the payload must not undo.
    static func prepareOutside(_ setup: PayloadKeeper.Setup) throws(SystemError) -> (console: Int32, notify: Int32) {
        // Its cgroups first: the cgroup namespace made below is rooted where it is then.
        for fd in setup.programCgroups + (setup.payloadCgroup.map { [$0] } ?? []) {
            try syscall("write(cgroup.procs)") { write(fd, "0", 1) }
        }
        try syscall("unshare(CLONE_NEWNS)") { cj_unshare(CLONE_NEWNS) }
        try syscall("mount(MS_PRIVATE)", path: "/") { mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) }
        let nosuidNodevNoexec = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        // The fully visible proc the payload's own needs (see Payload.swift); it shows the
        // jail's processes only to who may ptrace them, which the payload's root may not.
        try syscall("mount(proc, hidepid=invisible)", path: "/proc") {
            mount("proc", "/proc", "proc", nosuidNodevNoexec, "hidepid=invisible")
        }
        try syscall("mount(tmpfs)", path: "/run") { mount("tmpfs", "/run", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=755,size=65536k") }
        try syscall("mount(tmpfs)", path: "/tmp") { mount("tmpfs", "/tmp", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=1777,size=65536k") }
        try syscall("mkdir", path: "/run/host") { mkdir("/run/host", 0o755) }
        try writeBootID()
        let notify = try syscall("bind", path: notifyPath) { cj_unix_dgram_bind(notifyPath) }
        var slave = [CChar](repeating: 0, count: 128)
        let console = try syscall("open(/dev/ptmx)") { cj_open_pty_master(&slave, slave.count) }
        // The relay drains it in a loop until EAGAIN: blocking, it would stop the boot's loop.
        try syscall("fcntl(O_NONBLOCK)", path: "/dev/ptmx") { cj_set_nonblocking(console, 1) }
        let target = open("/dev/console", O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if target < 0 { throw .last("create", path: "/dev/console") }
        close(target)
        let slavePath = String(decoding: slave.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        try syscall("mount(bind)", path: "/dev/console") { mount(slavePath, "/dev/console", nil, UInt(MS_BIND), nil) }
        return (console, notify)
    }

    /// A random UUID, as the kernel's boot_id reads (a new one at each boot of the payload).
    static func writeBootID() throws(SystemError) {
        var bytes = [UInt8](repeating: 0, count: 16)
        let random = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        if random < 0 { throw .last("open", path: "/dev/urandom") }
        let got = bytes.withUnsafeMutableBytes { read(random, $0.baseAddress, 16) }
        close(random)
        if got != 16 { throw .last("read", path: "/dev/urandom") }
        bytes[6] = bytes[6] & 0x0f | 0x40
        bytes[8] = bytes[8] & 0x3f | 0x80
        let hex = bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
        let text = hex[0..<4].joined() + "-" + hex[4..<6].joined() + "-" + hex[6..<8].joined() + "-"
            + hex[8..<10].joined() + "-" + hex[10..<16].joined() + "\n"
        let fd = open(bootIDPath, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o444)
        if fd < 0 { throw .last("create", path: bootIDPath) }
        defer { close(fd) }
        if text.withCString({ write(fd, $0, strlen($0)) }) < 0 { throw .last("write", path: bootIDPath) }
    }

    /// The child user namespace (its maps written by the keeper), then the payload's own
    /// mount, UTS, IPC, cgroup and PID namespaces, owned by it, and its cgroup2.
    static func enterOwnNamespaces(_ setup: PayloadKeeper.Setup, keeper: Int32) throws(SystemError) {
        try syscall("unshare(CLONE_NEWUSER)") { cj_unshare(CLONE_NEWUSER) }
        // A non-dumpable process's /proc files belong to host root, so the keeper could not
        // open our uid_map: dumpable while it writes. Safe for that moment: no jail program
        // may ptrace us (its capabilities are no superset of ours, and its Landlock domain
        // keeps ptrace inside the jail's).
        if cj_set_dumpable(1) != 0 { throw .last("prctl(PR_SET_DUMPABLE, 1)") }
        var byte = UInt8(ascii: "u")
        _ = write(keeper, &byte, 1)
        let mapped = read(keeper, &byte, 1) == 1 && byte == UInt8(ascii: "m")
        if cj_set_dumpable(0) != 0 { throw .last("prctl(PR_SET_DUMPABLE, 0)") }
        guard mapped else { throw SystemError("the payload's user namespace has no maps", errno: .permissionDenied) }
        try syscall("unshare(payload namespaces)") { cj_unshare(namespaceFlags) }
        if let hostname = setup.hostname {
            try syscall("sethostname") { sethostname(hostname, hostname.utf8.count) }
        }
        try syscall("mount(cgroup2)", path: "/sys/fs/cgroup") {
            mount("cgroup2", "/sys/fs/cgroup", "cgroup2", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil)
        }
    }

    /// The payload's first steps, as PID 1 of its namespace, then PATH. Never returns.
    static func execPayload(_ setup: PayloadKeeper.Setup) -> Never {
        func die(_ what: String) -> Never {
            let line = "jaild: payload: \(what): \(Errno(rawValue: errno))\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
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
        _ = setsid()
        let console = open("/dev/console", O_RDWR)
        if console < 0 { die("open /dev/console") }
        _ = ioctl(console, UInt(TIOCSCTTY), 0)
        for target: Int32 in [0, 1, 2] { dup2(console, target) }
        if console > 2 { close(console) }
        _ = chdir("/")
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
    let console: Int32
    let notify: Int32
    var consoleLine: [UInt8] = []
    var halted = false
    var commandsOpen = true
    var isSystemd = false

    mutating func run() -> Int32 {
        isSystemd = Self.namesSystemd(setup.command[0])
        guard let signals = try? SignalDescriptor([SIGCHLD]) else { return 1 }
        while true {
            var entries = [pollfd(fd: console, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: notify, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: signals.fd.rawValue, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: commandsOpen ? setup.commands : -1, events: Int16(POLLIN), revents: 0)]
            if poll(&entries, nfds_t(entries.count), -1) < 0 && errno != EINTR { return 1 }
            if entries[0].revents != 0 { relayConsole() }
            if entries[1].revents != 0 { readNotifications() }
            if entries[3].revents != 0 { obey() }
            if entries[2].revents != 0 {
                _ = try? signals.receive()
                var status: Int32 = 0
                if waitpid(payload, &status, WNOHANG) == payload { return ended(status) }
            }
        }
    }

    /// systemd is told by its name (/sbin/init is a link to it on Debian): it halts on
    /// SIGRTMIN+3; any other init gets SIGTERM (sysvinit's and busybox's are TERM-then-KILL).
    static func namesSystemd(_ path: String) -> Bool {
        var buffer = [CChar](repeating: 0, count: 4096)
        let resolved = realpath(path, &buffer).map { String(cString: $0) } ?? path
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
            how = "status \(cj_status_to_code(status))"
            code = 1
        }
        PayloadKeeper.report(setup.events, "ended \(how)")
        return code
    }

    mutating func obey() {
        var byte: UInt8 = 0
        let n = read(setup.commands, &byte, 1)
        if n <= 0 {
            commandsOpen = false
            return
        }
        switch byte {
        case UInt8(ascii: "h"):
            halted = true
            kill(payload, isSystemd ? PayloadBoot.systemdHalt : SIGTERM)
        case UInt8(ascii: "k"):
            halted = true
            kill(payload, SIGKILL)
        default:
            break
        }
    }

    mutating func readNotifications() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(notify, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n <= 0 { return }
            let text = String(decoding: buffer[0..<n], as: UTF8.self)
            for line in text.split(separator: "\n") {
                if line == "READY=1" { PayloadKeeper.report(setup.events, "ready") }
                if line == "STOPPING=1" { PayloadKeeper.report(setup.events, "stopping") }
            }
        }
    }

    mutating func relayConsole() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(console, &buffer, buffer.count)
            if n <= 0 { return }
            for byte in buffer[0..<n] {
                if byte == UInt8(ascii: "\n") {
                    flushConsole()
                } else if byte != UInt8(ascii: "\r") && consoleLine.count < 2048 {
                    consoleLine.append(byte)
                }
            }
        }
    }

    mutating func flushConsole() {
        guard !consoleLine.isEmpty else { return }
        let line = Array("payload console: ".utf8) + consoleLine + [UInt8(ascii: "\n")]
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        consoleLine.removeAll(keepingCapacity: true)
    }
}
