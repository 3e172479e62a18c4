import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `jaild create --disk SIZE [--disk-inodes N] [--disk-backend B]`: the jail's directory made
/// under its limit before anything is written in it, so even the jail user's first files count.
extension Provision {
    /// The limit of a request, with the backend chosen for the state directory's file system;
    /// checked with everything else, before anything is touched.
    /// With `kept` (data `jaild destroy --keep-data` left), the backend is the one that holds
    /// it: `--disk` is needed exactly when the data has a limit, and another backend is refused.
    static func diskLimit(_ r: JailCreation, paths: ProvisionPaths, kept: KeptData? = nil) throws(ProvisionError) -> DiskLimit? {
        let value = { (key: String) in r.options.last { $0.key == key }?.value }
        do {
            let parsed = try DiskLimit.parse(size: value("disk"), inodes: value("disk-inodes"), backend: value("disk-backend"))
            if let kept {
                let data = "the data kept of jail \(r.name)"
                switch (kept.backend, parsed) {
                case (.none, nil): return nil
                case (.none, .some): throw ProvisionError.refused("\(data) has no disk limit, and one cannot be put on existing data: leave out --disk")
                case (_, nil): throw ProvisionError.refused("\(data) is on a --disk-backend \(kept.backend.rawValue): give --disk SIZE")
                case (_, .some(let limit)):
                    if limit.backend != .auto && limit.backend.rawValue != kept.backend.rawValue {
                        throw ProvisionError.refused("\(data) is on a --disk-backend \(kept.backend.rawValue), not \(limit.backend.rawValue)")
                    }
                }
            }
            guard var limit = parsed else { return nil }
            if let kept, limit.backend == .auto, let backend = DiskBackend(rawValue: kept.backend.rawValue) { limit.backend = backend }
            let userNamespace = !r.options.contains { $0.key == "no-userns" && ["yes", "true", "1", "on"].contains($0.value.lowercased()) }
            limit.backend = try DiskStorage.choose(limit, stateDirectory: existingAncestor(paths.stateDirectory),
                                                   overlay: !r.copy, userNamespace: userNamespace)
            return limit
        } catch {
            throw ProvisionError.from(error)
        }
    }

    /// STATE/NAME: a btrfs subvolume with its qgroup limit, else a directory (0700 root).
    static func makeJailDirectory(_ path: String, disk: DiskLimit?, undo: inout [() -> Void]) throws(ProvisionError) {
        guard disk?.backend == .btrfs, let disk else {
            _ = try makeDirectory(path, mode: 0o700)
            undo.append { removeTree(path) }
            return
        }
        do { try BtrfsQuota.make(at: path, bytes: disk.bytes) } catch { throw ProvisionError.from(error) }
        undo.append { BtrfsQuota.removeAfterFailure(path) }
    }

    /// The image backend: STATE/NAME/disk.img made and formatted, upper/ (with the base root's
    /// mode and owner, which the merged root takes) and work/ made in it, and the overlay of
    /// the base over it opened detached, for the jail user's files. The image is removed with
    /// STATE/NAME by the caller's undo.
    /// `reuse`: the image `jaild destroy --keep-data` left, with its upper/ and work/, is attached as it is.
    static func openImageOverlay(base: String, jailDirectory: String, disk: DiskLimit, reuse: Bool = false) throws(ProvisionError) -> FileDescriptor {
        let info: stat
        do throws(SystemError) {
            guard let found = try fileStatusFollowingLinks(base) else { throw SystemError("stat", path: base, errno: .noSuchFileOrDirectory) }
            info = found
        } catch { throw .system(error) }
        let image = DiskImage(path: jailDirectory + "/" + DiskImage.fileName)
        let state: FileDescriptor
        do {
            if !reuse { try DiskImage.make(at: image.path, limit: disk) }
            state = try image.attach()
        } catch {
            throw ProvisionError.from(error)
        }
        defer { state.closeQuietly() }
        for (name, mode, uid, gid) in [("upper", info.st_mode & 0o7777, info.st_uid, info.st_gid), ("work", mode_t(0o700), 0, 0)] {
            let shown = image.path + ":/" + name
            if reuse {
                let kept: stat?
                do { kept = try fileStatus(name, in: state) } catch { throw .system(SystemError("lstat", path: shown, errno: error.errno)) }
                guard kept != nil else { throw ProvisionError.refused("the kept image \(image.path) has no \(name)/") }
                continue
            }
            do throws(SystemError) {
                do { try JailSystem.makeDirectory(name, mode: 0o700, in: state) } catch { throw SystemError("mkdir", path: shown, errno: error.errno) }
                let made = try openFile(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, in: state)
                defer { closeDescriptor(made.rawValue) }
                try made.setOwner(uid: uid, gid: gid, path: shown)
                try made.setMode(mode, path: shown)
            } catch { throw .system(error) }
        }
        // open_tree and the overlay's fsopen/fsmount are the point here: no face hides them.
        do throws(SystemError) {
            let lower = try syscall("open_tree", path: base) { cj_open_detached_tree(base) }
            defer { closeDescriptor(lower) }
            return FileDescriptor(rawValue: try syscall("overlay", path: image.path) { cj_overlay_open_layers(lower, state.rawValue) })
        } catch { throw .system(error) }
    }

    /// The config's disk lines: as given, with the backend that was chosen (so a start never
    /// guesses, and a moved state directory is refused rather than left unlimited).
    static func diskConfigLines(_ options: [(key: String, value: String)], disk: DiskLimit?) -> [String] {
        let given = options.filter { $0.key != "disk-backend" }.map { "\($0.key) = \($0.value)" }
        return given + (disk.map { ["disk-backend = \($0.backend.rawValue)"] } ?? [])
    }

    /// The path itself, or its nearest parent that exists (the state directory may be made later).
    static func existingAncestor(_ path: String) -> String {
        var current = path
        while current != "/" && !somethingExists(at: current) { current = Preflight.parentDirectory(current) }
        return current
    }
}
