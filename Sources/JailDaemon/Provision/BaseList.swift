import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// `jaild base list`: the bases of this host (STATE/bases/NAME, and any other directory a
/// jail's config names as its base) and the jails made from each.
extension Provision {
    public struct BaseRow: Equatable, Sendable {
        public var name: String
        public var path: String
        public var jails: [String]
    }

    public static func bases(paths: ProvisionPaths) -> [BaseRow] {
        var rows: [BaseRow] = listDirectory(paths.bases).sorted().compactMap { name in
            let path = "\(paths.bases)/\(name)"
            guard Preflight.isDirectoryFollowing(path) else { return nil }
            return BaseRow(name: name, path: canonical(path), jails: [])
        }
        for config in paths.configs() {
            guard let base = config.entries.value("base") else { continue }
            let path = canonical(base)
            if let index = rows.firstIndex(where: { $0.path == path }) {
                rows[index].jails.append(config.name)
            } else {
                rows.append(BaseRow(name: "-", path: path, jails: [config.name]))
            }
        }
        return rows
    }

    public static func baseTable(_ rows: [BaseRow]) -> String {
        let nameWidth = max(4, rows.map(\.name.count).max() ?? 0)
        let pathWidth = max(4, rows.map(\.path.count).max() ?? 0)
        func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
        var out = pad("BASE", nameWidth) + "  " + pad("PATH", pathWidth) + "  JAILS\n"
        for row in rows {
            let jails = row.jails.isEmpty ? "-" : row.jails.joined(separator: ",")
            out += pad(row.name, nameWidth) + "  " + pad(row.path, pathWidth) + "  " + jails + "\n"
        }
        return out
    }

    static func canonical(_ path: String) -> String {
        // A base that does not resolve (removed since) is listed as its config gives it.
        do { return try canonicalPath(path) } catch { return path }
    }
}
