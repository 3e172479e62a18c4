/// The pure part of a jail's user namespace: which slot of the pool a jail gets and the lines
/// of its uid_map and gid_map. The files it is read from and written to are UserRangeStore's.
public enum UserRange {
    /// Ids inside the jail that map to its range: 0–65535 (besides the user's own).
    public static let insideCount: UInt32 = 65536

    /// Host ids taken by someone else: an id of /etc/passwd or /etc/group, a range of
    /// /etc/subuid or /etc/subgid, or one of `ids` (the jail user's own uid and gid).
    public static func hostIDsInUse(passwd: String, group: String, subuid: String, subgid: String,
                                    ids: [UInt32]) -> [ClosedRange<UInt64>] {
        var used: [ClosedRange<UInt64>] = ids.map { UInt64($0)...UInt64($0) }
        for text in [passwd, group] {
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                if fields.count > 2, let id = UInt64(fields[2]) { used.append(id...id) }
            }
        }
        for text in [subuid, subgid] {
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                if fields.count > 2, let start = UInt64(fields[1]), let count = UInt64(fields[2]), count > 0 {
                    used.append(start...(start + count - 1))
                }
            }
        }
        return used
    }

    /// The first slot of the pool that holds no id in use and is not another jail's.
    public static func choose(pool: UserRangePool, inUse: [ClosedRange<UInt64>], taken: Set<UInt32>) -> UInt32? {
        candidates(pool: pool, inUse: inUse, taken: taken).first
    }

    /// Every free slot, in order (the store tries them until one is claimed).
    public static func candidates(pool: UserRangePool, inUse: [ClosedRange<UInt64>], taken: Set<UInt32>) -> [UInt32] {
        pool.slots.filter { slot in
            !taken.contains(slot) && !overlaps(slot, inUse)
        }
    }

    static func overlaps(_ slot: UInt32, _ inUse: [ClosedRange<UInt64>]) -> Bool {
        let range = UInt64(slot)...(UInt64(slot) + UInt64(UserRangePool.slotSize) - 1)
        return inUse.contains { $0.overlaps(range) }
    }

    /// uid_map (or gid_map) text: `id` is itself on both sides, every other id of 0–65535
    /// inside is `start` + that id on the host. Inside ranges and host ranges are disjoint,
    /// as the kernel requires.
    public static func mapLines(keeping id: UInt32, start: UInt32) -> String {
        guard id < insideCount else { return "0 \(start) \(insideCount)\n\(id) \(id) 1\n" }
        var lines = ""
        if id > 0 { lines += "0 \(start) \(id)\n" }
        lines += "\(id) \(id) 1\n"
        if id + 1 < insideCount { lines += "\(id + 1) \(start + id + 1) \(insideCount - id - 1)\n" }
        return lines
    }
}
