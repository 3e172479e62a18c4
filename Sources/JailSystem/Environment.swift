#if canImport(Glibc)
import Glibc
#endif

/// The value of environment variable `name` (getenv(3)), nil when it is not set.
public func environmentValue(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}

/// This machine's page size (sysconf(_SC_PAGESIZE)).
public func pageSize() -> Int {
    Int(sysconf(Int32(_SC_PAGESIZE)))
}
