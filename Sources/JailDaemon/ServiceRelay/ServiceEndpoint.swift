import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One `--service` as the relay holds it: the listening socket at JPATH inside the jail, and
/// an O_PATH descriptor of HOSTPATH's directory on the host, through which every connection
/// reaches the host's socket as `/proc/self/fd/N/NAME` (a magic link: it works after
/// pivot_root, and no path of the host is visible in the jail's tree).
///
/// Made by init in two steps, on either side of pivot_root: `openHostDirectories` while init
/// still sees the host's tree (and has host root's ids), `bindInside` once the jail's tree is
/// its root. A directory, not the socket's own inode: a host service that restarts binds a new
/// socket, which the next connection finds.
struct ServiceEndpoint {
    let spec: ServiceSpec
    let listener: FileDescriptor
    let hostDirectory: FileDescriptor
    let hostName: String

    /// What `connect(2)` is given: the host's socket through the held directory.
    var hostConnectPath: String { "/proc/self/fd/\(hostDirectory.rawValue)/\(hostName)" }

    /// Before pivot_root: each HOSTPATH's directory, O_PATH. A HOSTPATH that exists and is not
    /// a socket is refused (one absent is not: its service may start later).
    static func openHostDirectories(_ services: [ServiceSpec]) throws(JailError) -> [FileDescriptor] {
        var opened: [FileDescriptor] = []
        for service in services {
            let (directory, name) = split(service.hostPath)
            let fd = open(directory, CJ_O_PATH | O_DIRECTORY | O_CLOEXEC)
            var status = stat()
            let problem: String? = fd < 0 ? "cannot open \(directory) on the host: \(Errno(rawValue: errno))"
                : fstatat(fd, name, &status, AT_SYMLINK_NOFOLLOW) == 0 && !isSocket(status) ? "\(service.hostPath) exists and is not a socket"
                : nil
            if let problem {
                if fd >= 0 { close(fd) }
                for fd in opened { fd.closeQuietly() }
                throw .startFailed("--service \(service.jailPath): \(problem)")
            }
            opened.append(FileDescriptor(rawValue: fd))
        }
        return opened
    }

    /// After pivot_root, as the jail's root: binds every JPATH; on a failure the sockets bound
    /// so far are removed again and the descriptors closed (nothing left behind).
    static func bindAll(_ services: [ServiceSpec], hostDirectories: [FileDescriptor]) throws(JailError) -> [ServiceEndpoint] {
        var endpoints: [ServiceEndpoint] = []
        for (service, directory) in zip(services, hostDirectories) {
            do throws(JailError) {
                let listener = try bindInside(service)
                endpoints.append(ServiceEndpoint(spec: service, listener: listener, hostDirectory: directory,
                                                 hostName: split(service.hostPath).name))
            } catch {
                for endpoint in endpoints {
                    unlink(endpoint.spec.jailPath)
                    endpoint.listener.closeQuietly()
                }
                for directory in hostDirectories { directory.closeQuietly() }
                throw error
            }
        }
        return endpoints
    }

    /// The socket at JPATH: its directory found (or made, 0755) one component at a time
    /// without following any symlink, so a link the jail's tree holds cannot send the bind
    /// elsewhere; an old socket there is replaced, anything else refused.
    static func bindInside(_ service: ServiceSpec) throws(JailError) -> FileDescriptor {
        let (directoryPath, name) = split(service.jailPath)
        let fail = { (what: String) -> JailError in .startFailed("--service \(service.jailPath): \(what)") }
        var directory = open("/", CJ_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw fail("open /: \(Errno(rawValue: errno))") }
        defer { close(directory) }
        for component in directoryPath.split(separator: "/").map(String.init) {
            var next = cj_open_beneath_no_symlinks(directory, component, CJ_O_PATH | O_DIRECTORY)
            if next < 0 && errno == ENOENT {
                if mkdirat(directory, component, 0o755) < 0 && errno != EEXIST { throw fail("mkdir \(component): \(Errno(rawValue: errno))") }
                next = cj_open_beneath_no_symlinks(directory, component, CJ_O_PATH | O_DIRECTORY)
            }
            guard next >= 0 else {
                let reason = errno == ELOOP ? "a symlink on the way (services are made in the jail's own tree only)" : "\(Errno(rawValue: errno))"
                throw fail("cannot open the directory \(component): \(reason)")
            }
            close(directory)
            directory = next
        }
        var existing = stat()
        if fstatat(directory, name, &existing, AT_SYMLINK_NOFOLLOW) == 0 {
            guard isSocket(existing) else { throw fail("exists in the jail and is not a socket") }
            if unlinkat(directory, name, 0) < 0 { throw fail("unlink the old socket: \(Errno(rawValue: errno))") }
        }
        // bind(2) takes a path, not a directory descriptor: bound relative to the held directory
        // by moving there (init is single-threaded) and back. Listening at once is harmless: no
        // program of the jail runs yet, and the mode is set before any does.
        let oldMask = umask(0o177)
        let moved = fchdir(directory) == 0
        let socketFD = moved ? cj_unix_listen(name, 128) : -1
        let reason = Errno(rawValue: errno)
        _ = chdir("/")
        umask(oldMask)
        guard socketFD >= 0 else { throw fail("bind: \(reason)") }
        let owner = service.owner
        if let owner, fchownat(directory, name, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) < 0 {
            let reason = Errno(rawValue: errno)
            unlinkat(directory, name, 0)
            close(socketFD)
            throw fail("chown \(owner.uid):\(owner.gid): \(reason)")
        }
        if fchmodat(directory, name, mode_t(service.mode), 0) < 0 {
            let reason = Errno(rawValue: errno)
            unlinkat(directory, name, 0)
            close(socketFD)
            throw fail("chmod: \(reason)")
        }
        return FileDescriptor(rawValue: socketFD)
    }

    /// `/a/b/c.sock` → (`/a/b`, `c.sock`).
    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return ("/", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }
}
