import JailSystem
import SystemPackage

/// The running jails as `jaild list` and `jaild metrics` go through them: what
/// `JailState.all().filter(\.alive)` gives (an orphan's `supervisor` 0), in the same order (by
/// socket) and with the same warnings (in the directory's order), but each state file read
/// and each jail's figures made on as many threads as there are CPUs (Parallel).
enum RunningJails {
    /// `body` of each running jail, in order. `body` runs on several threads at once.
    static func map<T>(_ body: (JailState, CgroupParents) -> T) -> [T] {
        let names = listDirectory(JailState.directory).filter { $0.hasSuffix(".state") }.map { String($0.dropLast(6)) }
        // Each state file opened in the directory (without it, by its full path, as `load` does).
        let stateDirectory: FileDescriptor?
        do { stateDirectory = try openDirectoryPath(JailState.directory) } catch { stateDirectory = nil }
        defer { stateDirectory.map { closeDescriptor($0.rawValue) } }
        let readings = Parallel.map(names.count) { JailState.read(name: names[$0], in: stateDirectory) }
        var states: [JailState] = []
        states.reserveCapacity(readings.count)
        for reading in readings {
            switch reading {
            case .absent: continue
            case .state(let state): states.append(state)
            case .unusable(let warning): log.warning("\(warning)")
            }
        }
        // As JailState.named sorts (stable: equal sockets keep the directory's order); the
        // indices are sorted, not the states, which are large to move.
        let order = states.indices.sorted { states[$0].socket < states[$1].socket }
        let parents = CgroupParents(directories: states.lazy.flatMap(\.cgroups))
        var results = Parallel.map(order.count) { index in JailState.alive(states[order[index]]).map { body($0, parents) } }
        // Moved out, not copied (a row holds a state's many strings).
        var running: [T] = []
        running.reserveCapacity(results.count)
        for index in results.indices {
            if let result = results[index].take() { running.append(result) }
        }
        return running
    }
}
