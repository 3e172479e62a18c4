import JailClient
import JailDaemon

#if canImport(Glibc)
import Glibc
#endif

/// `jaild enter JAIL [--root] [-- CMD ARGS…]`: root on the host opens a session in a running
/// jail through its socket, like `jail` does for the jail's own user (jaild accepts peer uid
/// 0). A terminal on stdin gives a pty session, else stdio; the exit status is the program's.
/// The session is logged like any other, with the operator's peer uid.
enum Enter {
    static let usage = "usage: jaild enter JAIL [--root] [-- CMD ARGS…]"

    static func run(_ arguments: [String]) -> Never {
        var root = false
        var spec: String?
        var command: [String] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" {
                command = Array(arguments[(i + 1)...])
                break
            }
            if a == "--root" {
                root = true
            } else if spec == nil && !a.hasPrefix("-") {
                spec = a
            } else {
                ControlCommands.fail(usage, code: 2)
            }
            i += 1
        }
        guard let spec else { ControlCommands.fail(usage, code: 2) }
        guard getuid() == 0 else {
            ControlCommands.fail("enter: only root may enter a jail this way (the jail's user runs `jail`)")
        }
        guard let state = Control.runningJail(spec) else { exit(Control.noSuchJail(spec)) }
        var environment: [String: String] = [:]
        for name in ["TERM", "LANG", "SSH_CONNECTION"] {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        // The root-only control socket where the jail has one (every jail started by root):
        // there root is root also through a user namespace, which hides it on the jail's own.
        let control = !state.control.isEmpty && access(state.control, F_OK) == 0
        // What proves host root there (OperatorProof): made if a jaild from before it started the jail.
        if control {
            do { try OperatorProof.prepareDirectory() } catch { ControlCommands.fail("enter: \(error)") }
        }
        Client.enter(socket: control ? state.control : state.socket, control: control, owner: state.uid, root: root,
                     command: command, environment: environment)
    }
}
