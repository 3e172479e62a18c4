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
            var fd: FileDescriptor?
            var problem: String?
            do { fd = try openDirectoryPath(directory) } catch { problem = "cannot open \(directory) on the host: \(error.errno)" }
            // A path that cannot be looked at now (EACCES) is left to the connections, which say why.
            if let fd, let status = try? fileStatus(name, in: fd), !isSocket(status) {
                problem = "\(service.hostPath) exists and is not a socket"
            }
            if let problem {
                fd?.closeQuietly()
                for fd in opened { fd.closeQuietly() }
                throw .startFailed("--service \(service.jailPath): \(problem)")
            }
            if let fd { opened.append(fd) }
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
                    discardFile(endpoint.spec.jailPath)
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
        var directory: FileDescriptor
        do { directory = try openDirectoryPath("/") } catch { throw fail("open /: \(error.errno)") }
        defer { directory.closeQuietly() }
        for component in directoryPath.split(separator: "/").map(String.init) {
            let next: FileDescriptor
            do { next = try openOrMakeDirectory(component, in: directory) } catch {
                if error.operation == "mkdir" { throw fail("mkdir \(component): \(error.errno)") }
                let reason = error.errno == .tooManySymbolicLinkLevels
                    ? "a symlink on the way (services are made in the jail's own tree only)" : "\(error.errno)"
                throw fail("cannot open the directory \(component): \(reason)")
            }
            directory.closeQuietly()
            directory = next
        }
        let held = directory
        let existing: stat?
        do { existing = try fileStatus(name, in: held) } catch { throw fail("lstat: \(error.errno)") }
        if let existing {
            guard isSocket(existing) else { throw fail("exists in the jail and is not a socket") }
            do { try removeFile(name, in: held) } catch { throw fail("unlink the old socket: \(error.errno)") }
        }
        // bind(2) takes a path, not a directory descriptor: bound relative to the held directory
        // by moving there (init is single-threaded) and back. Listening at once is harmless: no
        // program of the jail runs yet, and the mode is set before any does.
        let listener: FileDescriptor
        do {
            listener = try withFileCreationMask(0o177) { () throws(SystemError) in
                try withWorkingDirectory(held) { () throws(SystemError) in try UnixSocket.listen(path: name) }
            }
        } catch { throw fail("bind: \(error.errno)") }
        let undo = {
            discardFile(name, in: held)
            listener.closeQuietly()
        }
        if let owner = service.owner {
            do { try setOwner(name, uid: owner.uid, gid: owner.gid, in: held) } catch {
                undo()
                throw fail("chown \(owner.uid):\(owner.gid): \(error.errno)")
            }
        }
        do { try setMode(name, mode_t(service.mode), in: held) } catch {
            undo()
            throw fail("chmod: \(error.errno)")
        }
        return listener
    }

    /// The directory `component` of `directory`, made (0755) if missing, opened (O_PATH) without
    /// following a symlink: ELOOP for a link.
    static func openOrMakeDirectory(_ component: String, in directory: FileDescriptor) throws(SystemError) -> FileDescriptor {
        let flags = CJ_O_PATH | O_DIRECTORY
        do { return try openBeneathWithoutSymlinks(component, in: directory, flags, name: component) } catch where error.errno == .noSuchFileOrDirectory {
            do { try makeDirectory(component, mode: 0o755, in: directory) } catch where error.errno == .fileExists {}  // made meanwhile
            return try openBeneathWithoutSymlinks(component, in: directory, flags, name: component)
        }
    }

    /// `/a/b/c.sock` → (`/a/b`, `c.sock`).
    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return ("/", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }
}
