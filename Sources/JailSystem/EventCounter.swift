import CJail
import SystemPackage

/// A non-blocking, close-on-exec eventfd(2) at 0: a counter the kernel adds to (cgroup v1's
/// OOM notification), readable while it is not 0.
public func makeEventCounter() throws(SystemError) -> FileDescriptor {
    FileDescriptor(rawValue: try syscall("eventfd") { cj_eventfd() })
}
