import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Reads and writes at an offset of a file of fixed-size records (utmp), which leave the
// descriptor's own offset alone; `path` is what the errors show.
extension FileDescriptor {
    /// pread(2) of up to `count` bytes at `offset`: fewer only at the end of the file (none past it).
    public func readBytes(count: Int, at offset: Int64, path: String) throws(SystemError) -> [UInt8] {
        var result: [UInt8] = []
        while result.count < count {
            var failure: Int32 = 0
            let chunk = [UInt8](unsafeUninitializedCapacity: count - result.count) { buffer, initialized in
                let n = Glibc.pread(rawValue, buffer.baseAddress, count - result.count, off_t(offset) + off_t(result.count))
                if n < 0 { failure = errno }
                initialized = max(n, 0)
            }
            if failure == EINTR { continue }
            if failure != 0 { throw SystemError("pread", path: path, errno: Errno(rawValue: failure)) }
            if chunk.isEmpty { break }
            result += chunk
        }
        return result
    }

    /// pwrite(2) of every byte of `bytes` at `offset` (a short write goes on with the rest).
    public func writeBytes(_ bytes: [UInt8], at offset: Int64, path: String) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.pwrite(rawValue, $0.baseAddress, $0.count, off_t(offset) + off_t(done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError.last("pwrite", path: path)
            }
            done += n
        }
    }

    /// The file's size as this descriptor sees it (lseek(2) to the end; the offset moves there).
    public func endOffset(path: String) throws(SystemError) -> Int64 {
        Int64(try syscall("lseek", path: path) { Glibc.lseek(rawValue, 0, SEEK_END) })
    }
}
