import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Bytes waiting to go one way, at most `limit`: the side they come from is read only while
/// there is room, so a side that stops reading stops the other (backpressure), and the relay
/// never holds more than two of these per connection.
struct ByteQueue {
    static let limit = 64 << 10
    private var bytes: [UInt8] = []
    private var start = 0

    var isEmpty: Bool { start == bytes.count }
    var room: Int { Self.limit - (bytes.count - start) }

    mutating func append(_ new: UnsafeRawBufferPointer) {
        if start > 0 && start == bytes.count {
            bytes.removeAll(keepingCapacity: true)
            start = 0
        }
        bytes.append(contentsOf: new)
    }

    mutating func append(_ new: [UInt8]) { new.withUnsafeBytes { append($0) } }

    /// Sends what it can without blocking; false when the peer is gone (EPIPE, ECONNRESET).
    mutating func send(to fd: FileDescriptor) -> Bool {
        while !isEmpty {
            let sent = bytes.withUnsafeBytes { buffer in
                Glibc.send(fd.rawValue, buffer.baseAddress! + start, buffer.count - start, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
            if sent > 0 {
                start += sent
                continue
            }
            if sent < 0 && errno == EINTR { continue }
            return sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
        }
        // Drained: the front is dropped in bulk, not byte by byte.
        bytes.removeAll(keepingCapacity: bytes.capacity <= Self.limit)
        start = 0
        return true
    }
}

/// One tenant connection and its connection to the host's service.
struct ServiceConnection {
    enum Step { case more, done }

    let tenant: FileDescriptor
    /// nil while the host's backlog is full (connect said EAGAIN): tried again until `deadline`.
    var host: FileDescriptor?
    let service: Int
    let deadline: Int64
    var toHost = ByteQueue()
    var toTenant = ByteQueue()
    /// End of file read from that side; `…Shut`: passed on to the other (shutdown SHUT_WR).
    var tenantEnded = false
    var hostEnded = false
    var hostShut = false
    var tenantShut = false

    var finished: Bool { tenantEnded && hostEnded && toHost.isEmpty && toTenant.isEmpty }

    /// What to ask poll for on each side (0: nothing, then only a hang-up is reported).
    var tenantEvents: Int16 {
        (!tenantEnded && toHost.room > 0 ? Int16(POLLIN) : 0) | (toTenant.isEmpty ? 0 : Int16(POLLOUT))
    }
    var hostEvents: Int16 {
        (!hostEnded && toTenant.room > 0 ? Int16(POLLIN) : 0) | (toHost.isEmpty ? 0 : Int16(POLLOUT))
    }

    /// One round after poll: reads where there is room, writes what is queued, passes each end
    /// of file on once the bytes before it are out. `.done`: close both.
    mutating func step(tenantRevents: Int16, hostRevents: Int16, scratch: UnsafeMutableRawBufferPointer) -> Step {
        guard let host else { return .more }
        // The tenant closed its socket while nothing more was asked of it: abandoned.
        if tenantEvents == 0 && tenantRevents & Int16(POLLHUP | POLLERR) != 0 { return .done }
        if tenantRevents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && !tenantEnded && toHost.room > 0 {
            switch Self.read(tenant, into: scratch, max: toHost.room) {
            case .end: tenantEnded = true
            case .bytes(let n): toHost.append(UnsafeRawBufferPointer(rebasing: scratch[..<n]))
            case .nothingYet: break
            case .failed: return .done
            }
        }
        if hostRevents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && !hostEnded && toTenant.room > 0 {
            switch Self.read(host, into: scratch, max: toTenant.room) {
            case .end: hostEnded = true
            case .bytes(let n): toTenant.append(UnsafeRawBufferPointer(rebasing: scratch[..<n]))
            case .nothingYet: break
            case .failed: return .done
            }
        }
        guard toHost.send(to: host), toTenant.send(to: tenant) else { return .done }
        if tenantEnded && toHost.isEmpty && !hostShut {
            shutdown(host.rawValue, Int32(SHUT_WR))
            hostShut = true
        }
        if hostEnded && toTenant.isEmpty && !tenantShut {
            shutdown(tenant.rawValue, Int32(SHUT_WR))
            tenantShut = true
        }
        return finished ? .done : .more
    }

    enum ReadResult { case bytes(Int), end, nothingYet, failed }

    static func read(_ fd: FileDescriptor, into scratch: UnsafeMutableRawBufferPointer, max: Int) -> ReadResult {
        while true {
            let n = recv(fd.rawValue, scratch.baseAddress, min(max, scratch.count), Int32(MSG_DONTWAIT))
            if n > 0 { return .bytes(n) }
            if n == 0 { return .end }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? .nothingYet : .failed
        }
    }

    func close() {
        tenant.closeQuietly()
        host?.closeQuietly()
    }
}
