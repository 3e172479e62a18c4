#if canImport(Glibc)
import Glibc
#endif

/// getrlimit(2) of this process: `resource` is RLIMIT_NOFILE's number and so on.
public func resourceLimit(_ resource: Int32) throws(SystemError) -> rlimit {
    var limit = rlimit()
    try syscall("getrlimit") { getrlimit(__rlimit_resource_t(UInt32(resource)), &limit) }
    return limit
}

/// setrlimit(2) of this process (and what it starts after).
public func setResourceLimit(_ resource: Int32, _ limit: rlimit) throws(SystemError) {
    var limit = limit
    try syscall("setrlimit") { setrlimit(__rlimit_resource_t(UInt32(resource)), &limit) }
}
