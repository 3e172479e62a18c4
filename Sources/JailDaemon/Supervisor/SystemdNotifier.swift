import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET (Type=notify units).
struct SystemdNotifier {
    let socketPath: String

    static var fromEnvironment: SystemdNotifier? {
        guard let path = environmentValue("NOTIFY_SOCKET") else { return nil }
        return path.isEmpty ? nil : SystemdNotifier(socketPath: path)
    }

    func notify(_ message: String) {
        do { try notifySystemd(message, socketPath: socketPath) } catch {
            log.warning("cannot notify systemd at \(socketPath): \(error.errno)")
        }
    }
}
