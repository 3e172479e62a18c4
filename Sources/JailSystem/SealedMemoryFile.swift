import CJail
import SystemPackage

/// A memfd holding `bytes`, sealed (no write, grow, shrink or further seal) and close-on-exec:
/// a record a process publishes about itself that a reader through /proc/PID/fd can trust
/// was written once, by it (memfd_create(2), F_ADD_SEALS).
public func sealedMemoryFile(named name: String, _ bytes: [UInt8]) throws(SystemError) -> FileDescriptor {
    FileDescriptor(rawValue: try syscall("memfd_create", path: name) { cj_sealed_memfd(name, bytes, bytes.count) })
}
