#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` with `strings` as an array of C strings (`const char **`), valid only inside
/// it: for a C call that takes a list of paths.
public func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { for copy in copies { free(copy) } }
    let pointers = copies.map { UnsafePointer($0) }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
