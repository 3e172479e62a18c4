import CJail
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// The jail's own cgroup namespace and its /sys/fs/cgroup, made by init.
///
/// The namespace's root is the jail's cgroup `jail/NAME` in every hierarchy jaild made one in
/// (the tenant sees it as `/`: `/init`, `/sessions`, `/programs` below it), and, in the other
/// hierarchies, the cgroup init was cloned in (also `/` inside). A cgroup namespace is rooted
/// where its creator sits when it is made, and no process stays in `jail/NAME` (cgroup v2 lets
/// no process sit beside children with controllers): so the supervisor moves init into
/// `jail/NAME` and says "C", init unshares and says "N" on its ready pipe, the supervisor moves
/// it on into `jail/NAME/init`, enables the v2 controllers and says "L" (JailCgroups,
/// Supervisor+Clone.swift). Everything that uses the cgroups (limits, the port filter, the
/// sessions cgroup, adoption, list, metrics, events) keeps host paths on the host side; the
/// descriptors of `programs` and `sessions` that init and the helpers write to were opened by
/// the supervisor, and the kernel checks a move against the namespace they were opened in.
///
/// /sys/fs/cgroup inside: the host's tree under the bound /sys is covered by a tmpfs (made in
/// the mount plan), and each hierarchy the jail has a cgroup in is mounted there afresh, as
/// the host mounts it, which in the jail's cgroup namespace shows the jail's subtree only. All
/// read-only: the jail's processes read their usage and limits, never write them.
struct CgroupView {
    struct Hierarchy: Equatable {
        /// Where the host mounts it, e.g. /sys/fs/cgroup/memory, /sys/fs/cgroup/unified.
        var mountPoint: String
        /// cgroup or cgroup2.
        var type: String
        /// The v1 controllers (and options) to name in the mount, e.g. "cpu,cpuacct"; "" for v2.
        var options: String
    }

    static let directory = "/sys/fs/cgroup"

    /// The host's cgroup mounts below /sys/fs/cgroup, from /proc/self/mountinfo (read before
    /// pivot_root, while init still has the host's mount table).
    static func hostHierarchies(mountinfo: String) -> [Hierarchy] {
        var found: [Hierarchy] = []
        for entry in MountInfoEntry.parseAll(mountinfo) where entry.fsType == "cgroup" || entry.fsType == "cgroup2" {
            guard entry.mountPoint == directory || entry.mountPoint.hasPrefix(directory + "/") else { continue }
            // Appended, not filtered and joined: that generic chain's first use was a tenth of a
            // millisecond of init's start (Swift runtime lookups).
            var options = ""
            if entry.fsType == "cgroup" {
                for option in entry.superOptions.split(separator: ",") where option != "rw" && option != "ro" {
                    if !options.isEmpty { options += "," }
                    options += option
                }
            }
            found.append(Hierarchy(mountPoint: entry.mountPoint, type: entry.fsType, options: options))
        }
        return found
    }

    /// The hierarchies in which `cgroupFile` (/proc/self/cgroup, read while init sits in the
    /// jail's cgroup, before the unshare) puts init under `jail/`: the ones to mount inside.
    static func jailHierarchies(_ hierarchies: [Hierarchy], cgroupFile: String) -> [Hierarchy] {
        var own: [Hierarchy] = []
        for line in cgroupFile.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[2].hasPrefix("/jail/") else { continue }
            let controllers = Set(parts[1].split(separator: ",").map(String.init))
            let match = hierarchies.first { h in
                parts[1].isEmpty ? h.type == "cgroup2"
                    : h.type == "cgroup" && Set(h.options.split(separator: ",").map(String.init)).isSuperset(of: controllers)
            }
            if let match, !own.contains(match) { own.append(match) }
        }
        return own
    }

    /// unshare(CLONE_NEWCGROUP): the namespace's root is where init sits now.
    static func enterNamespace() throws(JailError) {
        try JailError.wrap { () throws(SystemError) in
            try unshareNamespaces(CLONE_NEWCGROUP, "CLONE_NEWCGROUP")
        }
    }

    /// After the move out of the namespace's root (init is in `/init`): mounts each hierarchy
    /// on the tmpfs the plan put over /sys/fs/cgroup, then makes that tmpfs read-only.
    static func mount(_ hierarchies: [Hierarchy]) throws(JailError) {
        let flags = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
        try JailError.wrap { () throws(SystemError) in
            for h in hierarchies {
                if h.mountPoint != directory { try ensureDirectory(h.mountPoint, mode: 0o755) }
                try syscall("mount(\(h.type))", path: h.mountPoint) {
                    Glibc.mount(h.type, h.mountPoint, h.type, flags, h.options.isEmpty ? nil : h.options)
                }
            }
            // v2 alone is mounted on /sys/fs/cgroup itself, over the tmpfs: nothing to remount.
            if !hierarchies.contains(where: { $0.mountPoint == directory }) {
                try syscall("mount(remount,ro)", path: directory) {
                    Glibc.mount(nil, directory, nil, UInt(MS_REMOUNT | MS_BIND) | flags, nil)
                }
            }
        }
    }
}
