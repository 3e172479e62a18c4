import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// `--service JPATH=HOSTPATH[,mode=0666][,owner=UID[:GID]][,header=proxy|none][,max=N]`: a unix
/// stream socket at JPATH inside the jail whose every connection the service relay
/// (ServiceRelay/) carries to the host's socket HOSTPATH, after a PROXY v2 header naming the
/// jail and the caller. docs/services.md.
public struct ServiceSpec: Sendable, Equatable {
    public enum Header: String, Sendable, Equatable {
        /// PROXY protocol v2 with the jail's name and the caller's uid and pid (TLVs 0xE0, 0xE1).
        case proxy
        /// Raw bytes: the host service tells jails apart by the socket it listens on.
        case none
    }

    public var jailPath: String
    public var hostPath: String
    /// The socket's mode inside (default: every program of the jail may connect).
    public var mode: UInt32 = 0o666
    /// Owner inside (ids of the jail); nil: root inside (the jail's user without a user namespace).
    public var owner: (uid: UInt32, gid: UInt32)?
    public var header: Header = .proxy
    /// Connections relayed at once; more are accepted and closed at once.
    public var maxConnections = 64

    public static func == (a: ServiceSpec, b: ServiceSpec) -> Bool {
        a.jailPath == b.jailPath && a.hostPath == b.hostPath && a.mode == b.mode && a.owner?.uid == b.owner?.uid
            && a.owner?.gid == b.owner?.gid && a.header == b.header && a.maxConnections == b.maxConnections
    }

    public init(jailPath: String, hostPath: String) {
        self.jailPath = jailPath
        self.hostPath = hostPath
    }

    /// The bytes of a sockaddr_un's path, without the terminating NUL.
    static let maxPathBytes = 107

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let spec: String
        public let reason: String
        public var description: String { "--service '\(spec)': \(reason)" }
    }

    public static func parse(_ spec: String) throws(ParseError) -> ServiceSpec {
        let parts = spec.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let first = parts.first, let equals = first.firstIndex(of: "=") else {
            throw ParseError(spec: spec, reason: "expected JPATH=HOSTPATH[,mode=0666][,owner=UID[:GID]][,header=proxy|none][,max=N]")
        }
        let jailPath = BindMount.normalize(String(first[..<equals]))
        let hostPath = String(first[first.index(after: equals)...])
        for (name, path) in [("JPATH", String(first[..<equals])), ("HOSTPATH", hostPath)] {
            guard path.hasPrefix("/") else { throw ParseError(spec: spec, reason: "\(name) must be an absolute path") }
            guard path.utf8.count <= maxPathBytes else { throw ParseError(spec: spec, reason: "\(name) is longer than \(maxPathBytes) bytes") }
            guard !path.split(separator: "/").contains("..") else { throw ParseError(spec: spec, reason: "\(name) may not contain '..'") }
            // The state file keeps one `key=value` a line: no control character in a path.
            guard !path.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
                throw ParseError(spec: spec, reason: "\(name) may not contain control characters")
            }
        }
        guard jailPath != "/", !hostPath.hasSuffix("/") else { throw ParseError(spec: spec, reason: "a socket path names a file, not a directory") }
        var service = ServiceSpec(jailPath: jailPath, hostPath: hostPath)
        for option in parts.dropFirst() {
            let pair = option.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { throw ParseError(spec: spec, reason: "option '\(option)' is not NAME=VALUE") }
            switch pair[0] {
            case "mode":
                guard let mode = UInt32(pair[1], radix: 8), mode <= 0o777 else { throw ParseError(spec: spec, reason: "mode '\(pair[1])' is not octal like 0660") }
                service.mode = mode
            case "owner":
                let ids = pair[1].split(separator: ":", omittingEmptySubsequences: false).map { UInt32($0) }
                guard (1...2).contains(ids.count), let uid = ids[0], ids.count == 1 || ids[1] != nil else {
                    throw ParseError(spec: spec, reason: "owner '\(pair[1])' is not UID or UID:GID (numbers inside the jail)")
                }
                service.owner = (uid, ids.count == 2 ? ids[1]! : uid)
            case "header":
                guard let header = Header(rawValue: pair[1]) else { throw ParseError(spec: spec, reason: "header is 'proxy' or 'none', not '\(pair[1])'") }
                service.header = header
            case "max":
                guard let max = Int(pair[1]), (1...4096).contains(max) else { throw ParseError(spec: spec, reason: "max must be 1 to 4096") }
                service.maxConnections = max
            default:
                throw ParseError(spec: spec, reason: "unknown option '\(pair[0])' (mode, owner, header, max)")
            }
        }
        return service
    }

    /// Two services on one path inside: the second would replace the first's socket.
    public static func duplicate(in services: [ServiceSpec]) -> String? {
        var seen: Set<String> = []
        for service in services where !seen.insert(service.jailPath).inserted { return service.jailPath }
        return nil
    }

    /// What the jaild command says about the host's side before it starts (or adopts) a jail:
    /// warnings only. A HOSTPATH that does not exist yet is allowed (host services may start
    /// after the jails); one the relay could not use is worth a word. What is refused (a
    /// HOSTPATH that exists and is not a socket, a missing directory) is refused by init when
    /// it starts the jail (ServiceEndpoint), so an adoption never is.
    /// `mapsRange`: the relay connects as the jail's nobody, which is "other" to host files.
    public static func hostPathWarnings(_ services: [ServiceSpec], mapsRange: Bool) -> [String] {
        var warnings: [String] = []
        for service in services {
            let found: stat?
            // One that cannot be looked at is init's to refuse at the start, with its reason.
            do { found = try fileStatus(service.hostPath) } catch { continue }
            guard let status = found else {
                // A missing directory is init's refusal, not a warning.
                let directory = String(service.hostPath[..<(service.hostPath.lastIndex(of: "/") ?? service.hostPath.startIndex)])
                if somethingExists(at: directory.isEmpty ? "/" : directory) {
                    warnings.append("--service \(service.jailPath): \(service.hostPath) does not exist yet: connections fail until a host service listens there")
                }
                continue
            }
            if isSocket(status) && mapsRange && status.st_mode & 0o002 == 0 {
                warnings.append("--service \(service.jailPath): \(service.hostPath) is not writable by others: the relay (the jail's nobody) cannot connect; see docs/services.md")
            }
        }
        return warnings
    }
}
