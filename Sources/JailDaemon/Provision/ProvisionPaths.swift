import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where `jaild create`, `destroy`, `start NAME` and `base list` keep things. Tests point both
/// roots elsewhere (JAIL_CONFIG_DIR, JAIL_STATE_DIR), so they never touch the host's own.
///
/// STATE/NAME is 0700 root: the jail's upper layer, work directory and root mount point live
/// beneath it, out of every host user's reach (files root inside writes are root's on disk).
/// STATE/home/NAME is the host account's home: root's, readable, holding its authorized keys.
/// The sshd drop-in (SshdDropIn) goes to sshd's own directory, moved by JAIL_SSHD_CONFIG_DIR.
public struct ProvisionPaths: Sendable, Equatable {
    public var configDirectory: String
    public var stateDirectory: String
    public var sshdConfigDirectory: String

    public init(configDirectory: String = "/etc/jail", stateDirectory: String = "/var/lib/jail",
                sshdConfigDirectory: String = "/etc/ssh/sshd_config.d") {
        self.configDirectory = configDirectory
        self.stateDirectory = stateDirectory
        self.sshdConfigDirectory = sshdConfigDirectory
    }

    public static func fromEnvironment() -> ProvisionPaths {
        func value(_ name: String) -> String? {
            environmentValue(name).flatMap { $0.hasPrefix("/") ? $0 : nil }
        }
        return ProvisionPaths(configDirectory: value("JAIL_CONFIG_DIR") ?? "/etc/jail",
                              stateDirectory: value("JAIL_STATE_DIR") ?? "/var/lib/jail",
                              sshdConfigDirectory: value("JAIL_SSHD_CONFIG_DIR") ?? "/etc/ssh/sshd_config.d")
    }

    public func config(_ name: String) -> String { "\(configDirectory)/\(name).conf" }
    public func jail(_ name: String) -> String { "\(stateDirectory)/\(name)" }
    public func root(_ name: String) -> String { jail(name) + "/root" }
    public func upper(_ name: String) -> String { jail(name) + "/upper" }
    public func work(_ name: String) -> String { jail(name) + "/work" }
    public var bases: String { stateDirectory + "/bases" }
    public var homes: String { stateDirectory + "/home" }
    public func home(_ name: String) -> String { homes + "/" + name }

    /// Names under STATE that are not jails.
    static let reserved: Set<String> = ["bases", "home"]

    /// A jail's name is also its host account's: what useradd accepts on Debian, in short.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 32, !reserved.contains(name) else { return false }
        guard first == UInt8(ascii: "_") || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else { return false }
        return name.utf8.allSatisfy { c in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c)
                || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
        }
    }

    /// Every jail config: name → its entries (unreadable or malformed files are skipped: a
    /// listing of bases shows what it can read).
    public func configs() -> [(name: String, entries: [ConfigFile.Entry])] {
        listDirectory(configDirectory).filter { $0.hasSuffix(".conf") }.sorted().compactMap { file in
            let path = "\(configDirectory)/\(file)"
            guard let bytes = try? readFile(path) else { return nil }
            guard let entries = try? ConfigFile.parse(String(decoding: bytes, as: UTF8.self), path: path) else { return nil }
            return (String(file.dropLast(5)), entries)
        }
    }
}

extension ProvisionPaths {
    /// The jails whose config gives `uid` (`uid = N`), for `jaild create`'s check. A config of
    /// a jail whose host account `jaild create` made (`created`: passwd comments it "jail NAME")
    /// is not read: that account's uid is the jail's, and create checks the accounts' uids
    /// first (a start of such a config with another account's uid is refused, Preflight). Only
    /// the other configs, written by hand, are read: with one openat(2) relative to the
    /// directory, one read and a close each, parsed only when the bytes hold the uid's digits.
    /// Reading all 2,000 configs took 4 ms of a 12 ms create at 2,000 tenants. A config that
    /// cannot be read is an error: skipped, it could hide the jail that has the uid.
    func configs(withUID uid: UInt32, created: Set<String> = []) throws(ProvisionError) -> [String] {
        let digits = Array("\(uid)".utf8)
        let directory: FileDescriptor
        do {
            guard let opened = try openFileIfPresent(configDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) else { return [] }
            directory = opened
        } catch { throw .system(error) }
        defer { closeDescriptor(directory.rawValue) }
        var holders: [String] = []
        for file in listDirectory(configDirectory) where file.hasSuffix(".conf") && !created.contains(String(file.dropLast(5))) {
            let path = "\(configDirectory)/\(file)"
            let bytes: [UInt8]
            do throws(SystemError) {
                guard let fd = try openFileIfPresent(file, O_RDONLY | O_CLOEXEC, in: directory) else { continue }  // removed meanwhile
                defer { closeDescriptor(fd.rawValue) }
                // A regular file's read is short only at its end: one read for any config under 64 KiB.
                let first = try fd.readChunk(max: 65536) ?? []
                bytes = first.count < 65536 ? first : first + (try readAll(fd))
            } catch { throw .failed("cannot read \(path)", error) }
            guard bytes.contains(sequence: digits) else { continue }
            let entries: [ConfigFile.Entry]
            do { entries = try ConfigFile.parse(String(decoding: bytes, as: UTF8.self), path: path) } catch {
                throw .cause("cannot read \(path)", error)
            }
            if entries.value("uid") == "\(uid)" { holders.append(String(file.dropLast(5))) }
        }
        return holders.sorted()
    }
}

extension [UInt8] {
    /// Whether `sequence` occurs in these bytes.
    func contains(sequence: [UInt8]) -> Bool {
        guard !sequence.isEmpty, sequence.count <= count else { return sequence.isEmpty }
        let first = sequence[0]
        var i = 0
        while i <= count - sequence.count {
            if self[i] == first && self[i..<(i + sequence.count)].elementsEqual(sequence) { return true }
            i += 1
        }
        return false
    }
}

extension [ConfigFile.Entry] {
    func value(_ key: String) -> String? { last { $0.key == key }?.value }
}

extension Provision {
    /// The pid file of the jail that CONFIG/NAME.conf defines (`jaild stop NAME`), from its
    /// uid, gid and socket prefix; nil when there is no such config.
    /// A config that is there but cannot be read or parsed is said in a warning (the caller
    /// then says that no jail has the name), not taken for no config in silence.
    static func pidFile(ofJail name: String, paths: ProvisionPaths) -> String? {
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else { return nil }
        let path = paths.config(name)
        let entries: [ConfigFile.Entry]
        do {
            guard let text = try readTextIfPresent(path) else { return nil }
            entries = try ConfigFile.parse(text, path: path)
        } catch {
            log.warning("cannot read \(path): \(error)")
            return nil
        }
        guard let uid = entries.value("uid").flatMap({ UInt32($0) }) else { return nil }
        let prefix = entries.value("socket-prefix")
        // Without a gid in the config, the group is the jail's: the running jail of this uid says it.
        let gid = entries.value("gid").flatMap { UInt32($0) }
            ?? JailState.all().first { $0.alive && $0.state.uid == uid
                && $0.state.socket.hasPrefix((prefix ?? SocketLocation.defaultPrefix) + "-") }?.state.gid
            ?? uid
        return SocketLocation(prefix: prefix, uid: uid, gid: gid).pidPath
    }
}
