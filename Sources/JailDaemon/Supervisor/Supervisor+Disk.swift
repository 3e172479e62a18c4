import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The start's hooks for `--disk` (Disk/DiskStorage.swift): the image resized or the qgroup
/// set before anything else, and, for the image backend, the image's file system in place of
/// the jail directory wherever the overlay's upper and work directories are looked for.
extension DiskStorage {
    /// The storage of a configuration, checked and prepared for a start (nil: no `--disk`).
    static func prepared(for configuration: JailConfiguration) throws(JailError) -> DiskStorage? {
        do {
            let storage = try DiskStorage(configuration)
            try storage?.prepare()
            return storage
        } catch {
            throw .disk(error)
        }
    }

    /// The image backend's merged tree for reading the jail's files before the start: the
    /// image's upper/ over the base, both as read-only layers, so that the image can be
    /// mounted read-only and its unmount writes nothing (nil for the other backends, whose
    /// layers are paths).
    func openOverlay(lower: String) throws(JailError) -> Int32? {
        let state: FileDescriptor?
        do { state = try attachImage(readOnly: true) } catch { throw .disk(error) }
        guard let state else { return nil }
        defer { state.closeQuietly() }
        do throws(SystemError) {
            let base = try openDetachedTree(lower)
            defer { base.closeQuietly() }
            return try openDetachedReadOnlyOverlay(state: state, lower: base, name: directory + "/" + DiskImage.fileName).rawValue
        } catch { throw .system(error) }
    }
}

extension Supervisor {
    /// A detached tree of `path` for the clone; the jail directory of an image-backed jail is
    /// the image's file system instead (mounted here, attached only inside the jail).
    func openLayerTree(_ path: String) throws(JailError) -> FileDescriptor {
        if let storage = try DiskStorage.checked(configuration), storage.directory == path {
            do {
                if let tree = try storage.attachImage() { return tree }
            } catch {
                throw .disk(error)
            }
        }
        do { return try openDetachedTree(path) } catch { throw .system(error) }
    }
}

extension DiskStorage {
    static func checked(_ configuration: JailConfiguration) throws(JailError) -> DiskStorage? {
        do { return try DiskStorage(configuration) } catch { throw .disk(error) }
    }
}
