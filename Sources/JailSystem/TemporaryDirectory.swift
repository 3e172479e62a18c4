import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// mkdtemp(3): a new directory, mode 0700, whose name is `template` with its trailing
/// `XXXXXX` made unique; its path. Nobody else can have made it (mkdir fails on a name taken).
public func makeTemporaryDirectory(_ template: String) throws(SystemError) -> String {
    var name = Array(template.utf8CString)
    let made = name.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    guard made != nil else { throw SystemError.last("mkdtemp", path: template) }
    return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
