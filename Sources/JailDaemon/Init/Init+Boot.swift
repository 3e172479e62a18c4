import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Boot commands: the job /etc/rc did in the Emulab jails, supervised by init.
extension Init {
    /// `--boot` commands, as the jail's user through its shell, in the jail's program cgroups;
    /// their stdout and stderr go to jaild's log.
    mutating func startBootCommands(output: FileDescriptor) {
        // rc-stop writes there too at stop: then the pipe stays open.
        defer { if configuration.rcStop == nil { output.closeQuietly() } }
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        for command in configuration.bootCommands {
            let hello = Hello(mode: .stdio(passed: []), login: false, arguments: ["-c", command], environment: [])
            let request = SpawnRequest(command: SessionCommand(account: account, hello: hello, terminal: nil),
                                       account: account, stdio: [devNull, output.rawValue, output.rawValue],
                                       controllingTerminal: false)
            do {
                let pid = try spawn(request, settings: programSettings)
                bootCommands[pid] = command
                log.info("boot command '\(command)' started (pid \(pid) in the jail)")
            } catch {
                log.error("boot command '\(command)' did not start: \(error)")
            }
        }
    }
}
