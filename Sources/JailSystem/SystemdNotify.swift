import CJail
import SystemPackage

/// sd_notify without libsystemd: `message` as one datagram to `socketPath` ($NOTIFY_SOCKET; a
/// leading '@' is an abstract address).
public func notifySystemd(_ message: String, socketPath: String) throws(SystemError) {
    try syscall("sendto", path: socketPath) { cj_sd_notify(socketPath, message) }
}
