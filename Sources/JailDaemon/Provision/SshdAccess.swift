import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// What the host's sshd lets a tenant do: only reach its jail, through `jail`.
///
/// sshd starts the login shell (`jail`) for sessions, scp, sftp and rsync, and those run in the
/// jail. But what sshd forwards by itself it does on the host, in the tenant's sshd process —
/// the tenant's host uid, outside every jail's cgroup, port filter and mount namespace: `ssh -R`
/// listens on a port that another jail owns, `ssh -L`/`-W`/`-D` connect to a host-only port or
/// unix socket, `ssh -w` opens a tun device. Two layers keep that off, each enough alone:
/// - every key `jaild create` writes for the host's sshd starts with `restrict` and gives back
///   only what sessions use: a pty, and agent and X11 forwarding when the jail serves them
///   (`jail` carries both into the jail: docs/ssh.md);
/// - the drop-in below, for the host group `jail` that every tenant account is in, covers keys
///   an operator or a tenant adds later, passwords, and accounts whose authorized_keys the
///   tenant writes (a host home inside the jail).
/// Agent and X11 forwarding are not in the drop-in (`DisableForwarding yes` would end them):
/// sshd's agent socket and X11 listener are only ever connected to the tenant's own client.
enum SshdAccess {
    /// The host group of every tenant account, the drop-in's `Match Group`.
    static let tenantGroup = "jail"
    static let dropInName = "jail.conf"

    /// contrib/sshd/jail.conf, byte for byte (a unit test compares them). Checked against
    /// Debian 12's OpenSSH 9.2 with `sshd -T -C user=…`: a Match block in an included file ends
    /// with the file, so the settings that follow Debian's `Include` line stay global.
    static let dropIn = """
        # Jail: tenants reach the host only through `jail` (docs/ssh.md, "What sshd does on the host").
        # Installed as /etc/ssh/sshd_config.d/jail.conf by `jaild create` (when absent) and by the
        # jail.hosting Ansible role; Debian's sshd_config Includes that directory on its first line.
        # sshd reads it when reloaded: systemctl reload ssh.
        #
        # Tenant accounts are in the host group `jail`. Their sessions run inside their jails, but
        # what sshd itself forwards it does on the host, as the tenant's uid, outside every jail:
        # a listening port (ssh -R) that another jail owns, a connection (ssh -L, -W, -D) to a
        # host-only port or unix socket. So none of that. Agent and X11 forwarding stay as the rest
        # of sshd_config has them: `jail` carries them into the jail, and each key that `jaild create`
        # writes allows them only when its jail serves them (forward-agent, forward-x11).
        Match Group jail
            AllowTcpForwarding no
            AllowStreamLocalForwarding no
            GatewayPorts no
            PermitListen none
            PermitOpen none
            PermitTunnel no

        """

    // MARK: Keys

    /// Key types as authorized_keys spells them (sshd(8)): a line that starts with one has no options.
    static let keyTypePrefixes = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-"]

    /// Options that give back what `restrict` takes away: refused in a key file given to
    /// `jaild create`, which writes the options itself.
    static let grantingOptions: Set<String> = ["agent-forwarding", "port-forwarding", "permitlisten", "permitopen",
                                               "pty", "tunnel", "user-rc", "x11-forwarding"]

    /// `restrict` plus what the jail's sessions use (sshd(8), AUTHORIZED_KEYS FILE FORMAT).
    static func keyOptions(forwardAgent: Bool, forwardX11: Bool) -> String {
        (["restrict", "pty"] + (forwardAgent ? ["agent-forwarding"] : []) + (forwardX11 ? ["X11-forwarding"] : []))
            .joined(separator: ",")
    }

    /// `[options] TYPE BASE64 [comment]` split as sshd splits it: the options are
    /// comma-separated and end at the first blank outside double quotes (`from="a, b"`).
    static func splitOptions(_ line: Substring) -> (options: [Substring], key: Substring) {
        if keyTypePrefixes.contains(where: { line.hasPrefix($0) }) { return ([], line) }
        var options: [Substring] = []
        var start = line.startIndex
        var index = line.startIndex
        var quoted = false
        while index < line.endIndex {
            let c = line[index]
            if quoted, c == "\\", line.index(after: index) < line.endIndex {
                index = line.index(index, offsetBy: 2)
                continue
            }
            if c == "\"" {
                quoted.toggle()
            } else if !quoted, c == "," {
                options.append(line[start..<index])
                start = line.index(after: index)
            } else if !quoted, c == " " || c == "\t" {
                break
            }
            index = line.index(after: index)
        }
        options.append(line[start..<index])
        return (options, line[index...].trimmingWhitespace())
    }

    /// The first option of `line` that would undo `restrict`, if any.
    static func grantingOption(in line: Substring) -> String? {
        splitOptions(line).options.lazy.map { String($0.split(separator: "=", maxSplits: 1).first ?? "").lowercased() }
            .first { grantingOptions.contains($0) }
    }

    /// The key lines as the host's sshd gets them: each led by `keyOptions`, the line's own
    /// options (from=, expiry-time=, command=: they only narrow) kept after them.
    static func restrictedKeys(_ keys: String, forwardAgent: Bool, forwardX11: Bool) -> String {
        let lead = keyOptions(forwardAgent: forwardAgent, forwardX11: forwardX11)
        return keys.split(separator: "\n").map { line in
            let (options, key) = splitOptions(line)
            return ([lead] + options.map(String.init)).joined(separator: ",") + " " + key
        }.joined(separator: "\n") + "\n"
    }

    // MARK: The drop-in

    enum DropIn: Equatable {
        /// Written now, as jaild ships it.
        case installed(String)
        /// There already, as jaild ships it.
        case present(String)
        /// There, with other text: the operator's, left as it is.
        case differs(String)
        /// sshd's drop-in directory does not exist.
        case noDirectory(String)
    }

    /// Puts the drop-in into `directory` unless a file of its name is there (never overwritten:
    /// an operator's version is theirs, compared and reported).
    static func installDropIn(in directory: String) throws(ProvisionError) -> DropIn {
        let path = directory + "/" + dropInName
        guard Preflight.isDirectoryFollowing(directory) else { return .noDirectory(directory) }
        let existing: [UInt8]?
        do {
            existing = try fileStatus(path) == nil ? nil : try readFile(path, limit: 1 << 20)
        } catch {
            throw ProvisionError.from(error)
        }
        if let existing { return existing == Array(dropIn.utf8) ? .present(path) : .differs(path) }
        try Provision.writeFile(path, dropIn, mode: 0o644)
        return .installed(path)
    }

    /// What the operator should know after `jaild create`, one line each (none when all is well).
    static func notice(_ outcome: DropIn, name: String) -> String? {
        switch outcome {
        case .installed(let path):
            guard sshdListens() else { return nil }
            return "sshd reads the new \(path) (no forwarding on the host for group \(tenantGroup)) "
                + "only when reloaded: systemctl reload ssh"
        case .present:
            return nil
        case .differs(let path):
            return "warning: \(path) is not the one this jaild ships (contrib/sshd/jail.conf) and was left as it is; "
                + "check that it keeps forwarding off: sshd -T -C user=\(name),host=x,addr=127.0.0.1 | grep forwarding"
        case .noDirectory(let directory):
            return "warning: \(directory) does not exist: until contrib/sshd/jail.conf is part of sshd's config, "
                + "only the key's options keep \(name)'s forwarding off the host (docs/ssh.md)"
        }
    }

    /// Whether an sshd listener runs on this host: a process named sshd whose parent is not
    /// one (per-connection sshd processes are children of the listener). A socket-activated
    /// sshd starts per connection and reads its config each time: no reload needed.
    static func sshdListens() -> Bool {
        func commAndParent(_ pid: String) -> (String, String)? {
            guard let text = try? readText("/proc/\(pid)/stat"), let open = text.firstIndex(of: "("),
                  let close = text.lastIndex(of: ")") else { return nil }
            let rest = text[text.index(after: close)...].split(separator: " ")
            guard rest.count > 1 else { return nil }
            return (String(text[text.index(after: open)..<close]), String(rest[1]))
        }
        return listDirectory("/proc").contains { pid in
            guard pid.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                  let (comm, parent) = commAndParent(pid), comm == "sshd" else { return false }
            return commAndParent(parent)?.0 != "sshd"
        }
    }
}
