import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// poll(2) over a handful of descriptors. The loops here watch at most five, so poll is
/// simpler than epoll and just as fast.
public struct Poller {
    private var entries: [pollfd] = []

    public init() {}

    public mutating func reset() { entries.removeAll(keepingCapacity: true) }

    /// Adds a descriptor and returns its index for `events(at:)`.
    @discardableResult
    public mutating func add(_ fd: Int32, read: Bool = false, write: Bool = false) -> Int {
        var events: Int16 = 0
        if read { events |= Int16(POLLIN) }
        if write { events |= Int16(POLLOUT) }
        entries.append(pollfd(fd: fd, events: events, revents: 0))
        return entries.count - 1
    }

    /// Waits for events; `timeout` in milliseconds, -1 for none. Returns false on timeout.
    public mutating func wait(timeout: Int32 = -1) throws(SystemError) -> Bool {
        try wait(timeout: timeout, using: { poll($0, $1, $2) })
    }

    /// The same with another call in poll's place (an idle loop's, which first gives back memory).
    public mutating func wait(timeout: Int32, using call: (UnsafeMutablePointer<pollfd>?, nfds_t, Int32) -> Int32)
        throws(SystemError) -> Bool {
        while true {
            let n = entries.withUnsafeMutableBufferPointer { call($0.baseAddress, nfds_t($0.count), timeout) }
            if n >= 0 { return n > 0 }
            if errno == EINTR { continue }
            throw SystemError.last("poll")
        }
    }

    public func readable(_ index: Int) -> Bool {
        entries[index].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0
    }

    public func writable(_ index: Int) -> Bool {
        entries[index].revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0
    }

    /// The peer of this descriptor went away (POLLERR/POLLHUP).
    public func hungUp(_ index: Int) -> Bool {
        entries[index].revents & Int16(POLLHUP | POLLERR) != 0
    }
}
