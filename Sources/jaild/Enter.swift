import ArgumentParser
import JailClient
import JailDaemon

#if canImport(Glibc)
import Glibc
#endif

/// `jaild enter JAIL [--root] [-- CMD ARGS…]`: root on the host opens a session in a running
/// jail through its socket, like `jail` does for the jail's own user (jaild accepts peer uid
/// 0). A terminal on stdin gives a pty session, else stdio; the exit status is the program's.
/// The session is logged like any other, with the operator's peer uid.
struct EnterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enter", abstract: "Open a session in a running jail as its user (or root with --root), as host root.")

    @OptionGroup var target: JailArgument
    var jail: String { target.jail }

    @Flag(help: "Be root inside the jail instead of the jail's user.")
    var root = false

    @Argument(parsing: .postTerminator,
              help: ArgumentHelp("The command and its arguments after `--` (default: the user's login shell).", valueName: "cmd"))
    var command: [String] = []

    func run() throws {
        guard getuid() == 0 else {
            JailLogHandler.emitToTerminal("enter: only root may enter a jail this way (the jail's user runs `jail`)")
            throw ExitCode(1)
        }
        guard let state = Control.runningJailOrSay(jail) else { throw ExitCode(1) }
        var environment: [String: String] = [:]
        for name in ["TERM", "LANG", "SSH_CONNECTION"] {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        // The root-only control socket where the jail has one (every jail started by root):
        // there root is root also through a user namespace, which hides it on the jail's own.
        let control = !state.control.isEmpty && access(state.control, F_OK) == 0
        // What proves host root there (OperatorProof): made if a jaild from before it started the jail.
        if control {
            do { try OperatorProof.prepareDirectory() } catch {
                JailLogHandler.emitToTerminal("enter: \(error)")
                throw ExitCode(1)
            }
        }
        Client.enter(socket: control ? state.control : state.socket, control: control, owner: state.uid, root: root,
                     command: command, environment: environment)
    }
}
