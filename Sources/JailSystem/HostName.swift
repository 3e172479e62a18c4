import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The host name of the calling process's UTS namespace (gethostname(2)): a jail's own.
public func hostName() throws(SystemError) -> String {
    var name = [CChar](repeating: 0, count: 257)
    try syscall("gethostname") { gethostname(&name, name.count - 1) }
    return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Sets the host name of the calling process's UTS namespace (sethostname(2)).
public func setHostName(_ name: String) throws(SystemError) {
    try syscall("sethostname", path: name) { sethostname(name, name.utf8.count) }
}
