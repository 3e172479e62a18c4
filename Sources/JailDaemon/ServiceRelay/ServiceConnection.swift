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
    mutating func flush(to fd: FileDescriptor) -> Bool {
        while !isEmpty {
            let sent: Int
            do {
                let from = start
                sent = try bytes.withUnsafeBytes { (buffer) throws(SystemError) in try fd.sendSome(UnsafeRawBufferPointer(rebasing: buffer[from...])) }
            } catch { return false }  // the peer is gone: the connection ends
            if sent == 0 { return true }  // full: the rest when poll says there is room
            start += sent
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
            switch Self.receive(tenant, into: scratch, max: toHost.room) {
            case .end: tenantEnded = true
            case .bytes(let n): toHost.append(UnsafeRawBufferPointer(rebasing: scratch[..<n]))
            case .nothingYet: break
            case .failed: return .done
            }
        }
        if hostRevents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && !hostEnded && toTenant.room > 0 {
            switch Self.receive(host, into: scratch, max: toTenant.room) {
            case .end: hostEnded = true
            case .bytes(let n): toTenant.append(UnsafeRawBufferPointer(rebasing: scratch[..<n]))
            case .nothingYet: break
            case .failed: return .done
            }
        }
        guard toHost.flush(to: host), toTenant.flush(to: tenant) else { return .done }
        // A side whose end of stream cannot be passed on (reset meanwhile) ends the connection.
        if tenantEnded && toHost.isEmpty && !hostShut {
            do { try host.shutdownWrite() } catch { return .done }
            hostShut = true
        }
        if hostEnded && toTenant.isEmpty && !tenantShut {
            do { try tenant.shutdownWrite() } catch { return .done }
            tenantShut = true
        }
        return finished ? .done : .more
    }

    enum ReadResult { case bytes(Int), end, nothingYet, failed }

    static func receive(_ fd: FileDescriptor, into scratch: UnsafeMutableRawBufferPointer, max: Int) -> ReadResult {
        let received: Int?
        do { received = try fd.receiveSome(into: UnsafeMutableRawBufferPointer(rebasing: scratch[..<min(max, scratch.count)])) } catch {
            return .failed
        }
        guard let received else { return .nothingYet }
        return received == 0 ? .end : .bytes(received)
    }

    func close() {
        tenant.closeQuietly()
        host?.closeQuietly()
    }
}
