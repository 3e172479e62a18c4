import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Finds and verifies the jail's socket before trusting it: the socket and its directory
/// must belong to root (or to this user), and the process serving it must be root (or this
/// user). Another local user who squats the path gets a refusal, not our session.
enum Connection {
    /// `alsoTrusted`: `jaild enter` run by root also trusts the jail's own uid, which owns
    /// the socket of a root jail and serves a rootless one.
    static func open(_ location: SocketLocation, uid: UInt32, alsoTrusted: UInt32? = nil) throws(ClientError) -> FileDescriptor {
        let path = location.socketPath
        let trusted: [UInt32] = [0, uid] + (alsoTrusted.map { [$0] } ?? [])
        let info: stat?
        do { info = try fileStatus(path) } catch { throw .system(error) }
        guard let info else { throw .noJail(uid: uid, socket: path, reason: "no such file") }
        guard isSocket(info) else { throw .untrusted("refusing \(path): it is not a socket") }
        guard trusted.contains(info.st_uid) else {
            throw .untrusted("refusing \(path): it is owned by uid \(info.st_uid), not by root")
        }
        let directory = location.directory
        let reason: String?
        do { reason = try untrustedDirectoryReason(directory, owners: trusted) } catch { throw .system(error) }
        if let reason { throw .untrusted("refusing \(path): its directory \(directory) \(reason)") }

        let socket: FileDescriptor
        do { socket = try UnixSocket.connect(path: path) } catch {
            switch error.errno {
            case .noSuchFileOrDirectory: throw .noJail(uid: uid, socket: path, reason: "no such file")
            case .connectionRefused: throw .noJail(uid: uid, socket: path, reason: "connection refused (stale socket)")
            default: throw .system(error)
            }
        }
        let server: PeerCredentials
        do { server = try UnixSocket.peerCredentials(socket) } catch {
            socket.closeQuietly()
            throw .system(error)
        }
        guard trusted.contains(server.uid) else {
            socket.closeQuietly()
            throw .untrusted("refusing \(path): it is served by uid \(server.uid), not by root")
        }
        return socket
    }
}
