import CJail
import SystemPackage
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// `jaild authorized-keys USER`: the keys a tenant keeps inside its jail, for the host's sshd.
///
/// sshd reads `~/.ssh/authorized_keys` with the account's own privileges, and a tenant's host
/// account must not be able to pass the directory above its jail's root (a member of a group
/// that can pass it runs as host root what root inside planted setuid: docs/security.md), so
/// the file that `ssh-copy-id` writes inside the jail is out of sshd's reach. sshd's
/// `AuthorizedKeysCommand`, run as root, asks jaild instead: jaild finds the running jail of the
/// host account, reads the jail user's file through init's root (`/proc/INIT/root`, resolved
/// in that root, regular file only, non-blocking, bounded in size and time: the tenant owns it)
/// and prints each key led by `restrict` and what the jail's sessions use, as the keys of
/// `jaild create --key` are (`SshdAccess.keyOptions`). A line whose own options would give back
/// what `restrict` takes away (port forwarding, a tunnel, user rc) is left out. No running jail,
/// no keys: a session could not reach the jail anyway.
extension Control {
    /// Bounds of what a tenant's file may cost the root process sshd waits for.
    static let authorizedKeysLimit = 256 << 10

    public enum AuthorizedKeysError: Error, CustomStringConvertible {
        case noHostAccount(String)
        case noRunningJail(String, uid: UInt32)
        case noJailUser(uid: UInt32)
        case unreadable(UntrustedFileError)
        case system(SystemError)

        public var description: String {
            switch self {
            case .noHostAccount(let user): "no host account '\(Logfmt.printable(user))' in /etc/passwd"
            case .noRunningJail(let user, let uid): "no running jail for \(Logfmt.printable(user)) (uid \(uid)): no keys"
            case .noJailUser(let uid): "the jail's /etc/passwd has no entry for uid \(uid): no keys"
            case .unreadable(let error): "\(error)"
            case .system(let error): "\(error)"
            }
        }
    }

    /// The lines for sshd, and the keys left out (with why), for the host account `user`.
    public static func authorizedKeys(hostUser user: String) throws(AuthorizedKeysError) -> (keys: String, skipped: [String]) {
        let passwd: [UInt8]
        do { passwd = try readFile("/etc/passwd") } catch { throw .system(error) }
        guard let account = PasswdEntry.parseAll(String(decoding: passwd, as: UTF8.self)).first(where: { $0.name == user })
        else { throw .noHostAccount(user) }
        guard let jail = JailState.all().filter(\.alive).map(\.state)
            .first(where: { $0.uid == account.uid && $0.gid == account.gid && $0.initPid > 0 })
        else { throw .noRunningJail(user, uid: account.uid) }
        let rootPath = "/proc/\(jail.initPid)/root"
        let rootDescriptor: FileDescriptor
        do { rootDescriptor = try openDirectoryPath(rootPath) } catch { throw .system(error) }
        defer { closeDescriptor(rootDescriptor.rawValue) }
        let root = rootDescriptor.rawValue
        let jailPasswd: [UInt8]
        do throws(UntrustedFileError) {
            jailPasswd = try readUntrustedFile("etc/passwd", inRoot: root, name: "the jail's /etc/passwd",
                                               limit: authorizedKeysLimit * 16, timeout: 1000)
        } catch { throw .unreadable(error) }
        guard let jailUser = PasswdEntry.parseAll(String(decoding: jailPasswd, as: UTF8.self)).first(where: { $0.uid == jail.uid })
        else { throw .noJailUser(uid: jail.uid) }
        let file = String(jailUser.home.drop(while: { $0 == "/" })) + "/.ssh/authorized_keys"
        let text: [UInt8]
        do throws(UntrustedFileError) {
            text = try readUntrustedFile(file, inRoot: root, name: "~\(jailUser.name)/.ssh/authorized_keys in the jail",
                                         limit: authorizedKeysLimit, timeout: 1000)
        } catch where error.isMissing {
            return ("", [])
        } catch { throw .unreadable(error) }
        return restrictedKeys(String(decoding: text, as: UTF8.self), forwardAgent: jail.forwardAgent, forwardX11: jail.forwardX11)
    }

    /// Every key line led by jaild's options; comments, blank lines and lines that would undo
    /// `restrict` are left out (the latter reported).
    static func restrictedKeys(_ text: String, forwardAgent: Bool, forwardX11: Bool) -> (keys: String, skipped: [String]) {
        var kept: [Substring] = []
        var skipped: [String] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            if let option = SshdAccess.grantingOption(in: line) {
                skipped.append("line \(number + 1): option \(Logfmt.printable(option)) would undo restrict")
                continue
            }
            kept.append(line)
        }
        guard !kept.isEmpty else { return ("", skipped) }
        return (SshdAccess.restrictedKeys(kept.joined(separator: "\n"), forwardAgent: forwardAgent, forwardX11: forwardX11),
                skipped)
    }
}
