import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `--rlimit NAME=SOFT[:HARD]`, set on every program of the jail before it starts.
public struct ResourceLimit: Equatable, Sendable {
    public let name: String
    public let resource: Int32
    public let soft: UInt64
    public let hard: UInt64

    /// Linux's RLIMIT_* numbers (the same on every architecture Jail builds for).
    static let resources: [String: Int32] = [
        "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7,
        "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14,
    ]

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let spec: String
        public let reason: String
        public var description: String { "rlimit '\(spec)': \(reason)" }
    }

    /// `nofile=1024`, `nofile=1024:4096`, `core=unlimited`; SOFT alone sets both.
    public static func parse(_ spec: String) throws(ParseError) -> ResourceLimit {
        guard let equals = spec.firstIndex(of: "=") else { throw ParseError(spec: spec, reason: "expected NAME=SOFT[:HARD]") }
        let name = spec[..<equals].lowercased()
        guard let resource = resources[name] else {
            throw ParseError(spec: spec, reason: "unknown limit (known: \(resources.keys.sorted().joined(separator: ", ")))")
        }
        let values = spec[spec.index(after: equals)...].split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(values.count) else { throw ParseError(spec: spec, reason: "expected NAME=SOFT[:HARD]") }
        func value(_ text: Substring) throws(ParseError) -> UInt64 {
            if text == "unlimited" || text == "infinity" { return UInt64.max }
            guard let n = UInt64(text) else { throw ParseError(spec: spec, reason: "'\(text)' is not a number") }
            return n
        }
        let soft = try value(values[0])
        let hard = values.count == 2 ? try value(values[1]) : soft
        guard soft <= hard else { throw ParseError(spec: spec, reason: "soft limit above the hard limit") }
        return ResourceLimit(name: name, resource: resource, soft: soft, hard: hard)
    }
}

/// Sizes as operators write them: `512M`, `2G`, `65536`, `1.5G`.
public enum ByteSize {
    public static func parse(_ text: String) -> UInt64? {
        let units: [Character: Double] = ["K": 1024, "M": 1024 * 1024, "G": 1024 * 1024 * 1024,
                                          "T": 1024 * 1024 * 1024 * 1024]
        var number = text.uppercased()
        if number.hasSuffix("B") { number.removeLast() }
        var factor = 1.0
        if let last = number.last, let unit = units[last] {
            factor = unit
            number.removeLast()
        }
        guard let value = Double(number), value > 0, value.isFinite else { return nil }
        return UInt64(value * factor)
    }
}

/// What the supervisor does for `--rlimit`s before the clone. Every program of the jail gets
/// its limits from setrlimit in the spawn child, inside the jail's user namespace, where no one
/// may raise a hard limit (CAP_SYS_RESOURCE counts in the host's namespace only); they inherit
/// init's hard limits, which are the supervisor's. So the supervisor, host root, raises its own
/// hard limit to each `--rlimit`'s hard first, and init, rc, boot commands and every session
/// start under it. What the kernel grants no one is refused here, in one line, before anything
/// starts: nofile above fs.nr_open; a rootless jaild cannot raise a hard limit at all.
public enum ResourceLimitGrant {
    public static func raiseOwnHardLimits(to limits: [ResourceLimit], rootless: Bool) throws(JailError) {
        for limit in limits {
            let own = try current(limit)
            if limit.hard <= UInt64(own.rlim_max) { continue }
            if rootless {
                throw .usage("--rlimit \(limit.name)=\(describe(limit.soft)):\(describe(limit.hard)): above jaild's own hard limit "
                             + "\(describe(UInt64(own.rlim_max))), which only root can raise")
            }
            if limit.resource == nofile {
                let maximum = try JailError.wrap { () throws(SystemError) in try readText(nrOpenPath) }
                if let nrOpen = UInt64(maximum.trimmingWhitespace()), limit.hard > nrOpen {
                    throw .usage("--rlimit nofile=\(describe(limit.soft)):\(describe(limit.hard)): above the kernel's most open files "
                                 + "(\(nrOpenPath) = \(nrOpen))")
                }
            }
            var raised = own
            raised.rlim_max = rlim_t(limit.hard)  // UInt64.max is RLIM_INFINITY
            do { try setResourceLimit(limit.resource, raised) } catch {
                let failure = error.errno
                // EPERM: root without CAP_SYS_RESOURCE (a container's bounding set, a unit's
                // CapabilityBoundingSet=) may lower a hard limit but not raise it.
                guard failure == .notPermitted else {
                    throw .system(SystemError("setrlimit(\(limit.name), hard \(describe(limit.hard)))", errno: failure))
                }
                throw .usage("--rlimit \(limit.name)=\(describe(limit.soft)):\(describe(limit.hard)): above jaild's own hard limit "
                             + "\(describe(UInt64(own.rlim_max))), which it cannot raise without CAP_SYS_RESOURCE")
            }
        }
    }

    static let nofile: Int32 = 7
    static let nrOpenPath = "/proc/sys/fs/nr_open"

    static func current(_ limit: ResourceLimit) throws(JailError) -> rlimit {
        do { return try resourceLimit(limit.resource) } catch {
            throw .system(SystemError("getrlimit(\(limit.name))", errno: error.errno))
        }
    }

    static func resourceType(_ limit: ResourceLimit) -> __rlimit_resource_t {
        __rlimit_resource_t(UInt32(limit.resource))
    }

    static func describe(_ value: UInt64) -> String { value == UInt64.max ? "unlimited" : "\(value)" }
}
