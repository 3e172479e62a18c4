import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// jaild's own file must never be writable from a jail (CVE-2019-5736): a session whose shell
/// is /proc/self/exe runs jaild again, as the jail user and dumpable, and /proc/PID/exe of it
/// is then the executable of the supervisor, init and helpers. A root jaild therefore runs
/// from a read-only, detached bind mount of itself (CJail/selfexec.c): the same file, but
/// every path to it from the jail refuses writes, chown and chmod with EROFS.
public enum ProtectedBinary {
    /// The cached copy of jaild (`ExecutableCache`) this start maps, kept open until the
    /// remap or re-exec is done; and why there is none, said once logging is set up.
    nonisolated(unsafe) static var image: FileDescriptor?  // the first process only: single-threaded
    nonisolated(unsafe) static var imageProblem: ExecutableCacheError?

    /// Maps jaild's file again from the read-only mount and makes that /proc/self/exe, without
    /// an exec (`remapFromReadOnlyMount`): the kernel allows it once no mapping of the old path is
    /// left. Called first thing, while few of the file's pages are mapped (each is dropped and
    /// faulted back). Measured against the re-exec, 21 starts each, interleaved three times:
    /// 0.45–0.6 ms less per start (no second exec of the 31 MB static binary, no second start
    /// of libc and the Swift runtime). Rootless, the jail's user could change only a jaild it
    /// owns anyway.
    /// The mount is of the cached copy of jaild when there is one (made here by the first
    /// start of a build), so that its code is mapped in 2 MiB pages; then jaild remaps even
    /// from a read-only mount of its own.
    public static func remapIfNeeded() {
        guard geteuid() == 0 else { return }
        if let identity = BuildIdentity.ofRunningProgram() {
            do { image = try ExecutableCache.image(for: identity) } catch { imageProblem = error }
        }
        guard image != nil || executableIsOnWritableMount() else { return }
        // A refusal leaves jaild where it was: reexecIfNeeded, next, takes the other way.
        if remapFromReadOnlyMount(image: image) { closeImage() }
    }

    /// Where the remap failed (PR_SET_MM refused): re-executes jaild from the read-only mount
    /// instead, unless it already runs from one.
    public static func reexecIfNeeded() {
        if let imageProblem {
            log.warning("jaild runs without its cached copy (\(ExecutableCache.directory)): \(imageProblem)")
        }
        guard geteuid() == 0, executableIsOnWritableMount() else { return closeImage() }
        let failure = reexecFromReadOnlyMount(image: image)
        closeImage()
        log.warning("cannot run jaild from a read-only mount of itself (\(failure.errno)): root in the jail could change jaild's file through /proc/PID/exe")
    }

    static func closeImage() {
        if let image { closeDescriptor(image.rawValue) }
        image = nil
    }
}
