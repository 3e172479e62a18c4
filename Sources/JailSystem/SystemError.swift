import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A failed system call, with the call and the object it was made on:
/// `mount(/srv/jail/proc): Operation not permitted`.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let path: String?
    public let errno: Errno

    public init(_ operation: String, path: String? = nil, errno: Errno) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    /// The error of the call that just failed, read from the thread's `errno`.
    public static func last(_ operation: String, path: String? = nil) -> SystemError {
        SystemError(operation, path: path, errno: Errno(rawValue: Glibc.errno))
    }

    public var description: String {
        if let path { return "\(operation)(\(path)): \(errno)" }
        return "\(operation): \(errno)"
    }
}

/// Runs a call that returns -1 and sets errno on failure; retries EINTR.
/// The corresponding C convention is the one of nearly every syscall.
@discardableResult
public func syscall<T: BinaryInteger>(
    _ operation: String, path: String? = nil, _ call: () -> T
) throws(SystemError) -> T {
    while true {
        let result = call()
        if result >= 0 { return result }
        if Glibc.errno == EINTR { continue }
        throw SystemError.last(operation, path: path)
    }
}
