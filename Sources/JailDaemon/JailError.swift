import JailProtocol
import JailSystem

/// Why a jail could not start, or a control command (list, stop, status) failed: one line for
/// the user. Sessions have their own error, SessionError, which reaches the client.
public enum JailError: Error, CustomStringConvertible {
    case system(SystemError)
    /// A system call that failed while jaild was doing `context` (crun's `crun_error_wrap`):
    /// the call, its path and errno stay typed; the user reads "context: reason", e.g.
    /// "--ports: cannot open cgroup /sys/fs/cgroup/jail/web: Permission denied".
    case failed(String, SystemError)
    case usage(String)
    case badRoot(String)
    case badMount(String)
    case account(Account.LookupError)
    case alreadyRunning(socket: String, pid: Int32)
    case unsafeSocketDirectory(String, reason: String)
    case socketInTheWay(String, reason: String)
    case rootless(String)
    case threaded(Int)
    case startFailed(String)
    case userNamespace(String)
    case disk(DiskError)
    /// The state file could not be written (JailState.save): without it the jail is unknown
    /// to `jaild list`, `stop NAME`, `sessions`, `enter` and adoption, so it does not run.
    case state(SystemError)

    public var description: String {
        switch self {
        case .system(let e): e.description
        case .failed(let context, let e): "\(context): \(e.errno)"
        case .usage(let s): s
        case .badRoot(let s): s
        case .badMount(let s): s
        case .account(let e): e.description
        case .alreadyRunning(let socket, let pid): "a jail is already running on \(socket) (pid \(pid))"
        case .unsafeSocketDirectory(let path, let reason): "refusing socket directory \(path): it \(reason)"
        case .socketInTheWay(let path, let reason): "cannot bind \(path): \(reason)"
        case .rootless(let s): s
        case .threaded(let n): "jaild has \(n) threads; namespaces need a single-threaded process"
        case .startFailed(let s): s
        case .userNamespace(let s): s
        case .disk(let e): e.description
        case .state(let e): "cannot save the jail's state: \(e)"
        }
    }

    /// Runs a throwing system call, turning its error into a JailError.
    @discardableResult
    static func wrap<T>(_ body: () throws(SystemError) -> T) throws(JailError) -> T {
        do { return try body() } catch { throw .system(error) }
    }
}
