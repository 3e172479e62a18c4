import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// What `jaild list`, `stop` and `status` know of a running jail: one small key=value file per
/// jail in /run/jail/state, written by its supervisor once the jail is ready and removed at
/// stop. Liveness is never taken from it alone: the pid file's lock decides.
public struct JailState: Equatable, Sendable {
    public var socket: String
    public var pidFile: String
    public var uid: UInt32
    public var gid: UInt32
    public var root: String
    public var supervisor: Int32
    public var initPid: Int32
    public var started: Int64
    public var cgroup: String
    public var ports: String = ""
    /// How `--rc` ended (its exit status); nil when the jail has no rc.
    public var rcStatus: Int32? = nil
    /// The first host id of the jail's user-namespace range (root inside); nil without one.
    public var userRange: UInt32? = nil
    /// The jail's name (`JailConfiguration.name(account:)`), for `jaild sessions NAME`.
    public var name: String = ""

    public static let directory = "/run/jail/state"

    public func encoded() -> String {
        [("socket", socket), ("pidfile", pidFile), ("uid", "\(uid)"), ("gid", "\(gid)"), ("root", root),
         ("supervisor", "\(supervisor)"), ("init", "\(initPid)"), ("started", "\(started)"), ("cgroup", cgroup),
         ("ports", ports), ("rc", rcStatus.map { "\($0)" } ?? ""), ("userns", userRange.map { "\($0)" } ?? ""),
         ("name", name)]
            .map { "\($0)=\($1)\n" }.joined()
    }

    public static func decode(_ text: String) -> JailState? {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard let socket = fields["socket"], let pidFile = fields["pidfile"], let uid = fields["uid"].flatMap({ UInt32($0) }),
              let gid = fields["gid"].flatMap({ UInt32($0) }), let supervisor = fields["supervisor"].flatMap({ Int32($0) }),
              let initPid = fields["init"].flatMap({ Int32($0) }), let started = fields["started"].flatMap({ Int64($0) })
        else { return nil }
        return JailState(socket: socket, pidFile: pidFile, uid: uid, gid: gid, root: fields["root"] ?? "/",
                         supervisor: supervisor, initPid: initPid, started: started, cgroup: fields["cgroup"] ?? "",
                         ports: fields["ports"] ?? "", rcStatus: fields["rc"].flatMap { Int32($0) },
                         userRange: fields["userns"].flatMap { UInt32($0) },
                         name: fields["name"] ?? "\(uid)-\(gid)")
    }

    func save(as name: String) {
        if mkdir("/run/jail", 0o755) < 0 && errno != EEXIST { return }
        if mkdir(Self.directory, 0o755) < 0 && errno != EEXIST { return }
        let path = "\(Self.directory)/\(name).state"
        let temporary = path + ".new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { return log.warning("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let text = Array(encoded().utf8)
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        rename(temporary, path)
    }

    static func remove(name: String) {
        unlink("\(directory)/\(name).state")
    }

    /// Every state file, with whether its jail is alive (its pid file is locked by its supervisor).
    public static func all() -> [(state: JailState, alive: Bool)] {
        var out: [(JailState, Bool)] = []
        for name in listDirectory(directory) {
            guard name.hasSuffix(".state"), let bytes = try? readFile("\(directory)/\(name)"),
                  let state = decode(String(decoding: bytes, as: UTF8.self)) else { continue }
            out.append((state, PidFile.isLocked(state.pidFile)))
        }
        return out.sorted { $0.0.socket < $1.0.socket }
    }
}
