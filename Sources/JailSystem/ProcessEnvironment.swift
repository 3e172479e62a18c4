#if canImport(Glibc)
import Glibc
#endif

// What this process runs in: its environment variables, the machine's page size.

/// The value of an environment variable of this process, nil when unset (getenv(3)).
public func environmentValue(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}

/// This process's page size (sysconf(_SC_PAGESIZE)).
public func pageSize() -> Int {
    Int(sysconf(Int32(_SC_PAGESIZE)))
}
