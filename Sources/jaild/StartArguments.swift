import ArgumentParser
import JailDaemon

/// A start's command line read without ArgumentParser, into StartOptions: its parse reflects
/// every option of `StartCommand` through the Swift runtime's type lookups, about 3.4 ms of a
/// 9 ms busybox start on the 2-core test VM (`jaild --version` 4.7 ms against 1.3 ms for
/// `jaild list`, which skips it). Only the plain forms are read here: `--opt value`, `--opt=value`,
/// `-x value`, flags. Anything else (help, --version, a positional, `--`, joined short
/// flags, an unknown option, a value that does not parse, a value that starts with `-`, a
/// failing validate()) gives nil, and ArgumentParser parses the line as before, with its own
/// error. StartArgumentsTests keeps this table equal to StartCommand's, option by option.
enum StartArguments {
    enum Entry: Sendable {
        case option(@Sendable (inout StartOptions, String) throws -> Void)
        case flag(@Sendable (inout StartOptions) -> Void)
    }

    /// The options a start line stands for, validated; nil: let ArgumentParser parse it.
    static func parse(_ arguments: [String]) -> StartOptions? {
        var command = StartOptions()
        var index = 0
        while index < arguments.count {
            let word = arguments[index]
            index += 1
            guard word.hasPrefix("-"), word != "--" else { return nil }
            var name = word
            var attached: String?
            if word.hasPrefix("--"), let equals = word.firstIndex(of: "=") {
                name = String(word[..<equals])
                attached = String(word[word.index(after: equals)...])
                guard attached != "" else { return nil }
            }
            switch entries[name] {
            case .flag(let set)?:
                guard attached == nil else { return nil }
                set(&command)
            case .option(let set)?:
                let value: String
                if let attached {
                    value = attached
                } else {
                    guard index < arguments.count, !arguments[index].hasPrefix("-") else { return nil }
                    value = arguments[index]
                    index += 1
                }
                do { try set(&command, value) } catch { return nil }
            case nil:
                return nil
            }
        }
        do { try command.validate() } catch { return nil }
        return command
    }

    /// A value of an ExpressibleByArgument type, as ArgumentParser reads it.
    static func value<T: ExpressibleByArgument>(_ text: String) throws -> T {
        guard let value = T(argument: text) else { throw ValidationError("'\(text)' is not a \(T.self)") }
        return value
    }

    /// Each option and flag by every name it has. --config is not here: the config expansion
    /// has replaced it by the file's options before the parse (ConfigExpansion).
    static let entries: [String: Entry] = {
        var table: [String: Entry] = [:]
        func option(_ names: String..., set: @escaping @Sendable (inout StartOptions, String) throws -> Void) {
            for name in names { table[name] = .option(set) }
        }
        func flag(_ names: String..., set: @escaping @Sendable (inout StartOptions) -> Void) {
            for name in names { table[name] = .flag(set) }
        }
        option("-a", "--socket-prefix") { $0.socketPrefix = $1 }
        option("-u", "--uid") { $0.uid = try value($1) }
        option("-g", "--gid") { $0.gid = try value($1) }
        option("-n", "--name") { $0.userName = $1 }
        option("-r", "--root") { $0.root = $1 }
        option("-s", "--shell") { $0.shell = $1 }
        option("-m", "--mount") { $0.mounts.append(try OptionValue.bindMount($1)) }
        option("--hostname") { $0.hostname = $1 }
        option("--stop-timeout") { $0.stopTimeout = try value($1) }
        option("--max-sessions") { $0.maxSessions = try value($1) }
        option("--handshake-timeout") { $0.handshakeTimeout = try value($1) }
        option("--boot") { $0.bootCommands.append($1) }
        option("--boot-restart") { $0.bootRestart = try value($1) }
        option("--cap") { $0.capabilities.append(try OptionValue.capability($1)) }
        option("--memory") { $0.memory = try OptionValue.memorySize($1) }
        option("--disk") { $0.disk = $1 }
        option("--disk-inodes") { $0.diskInodes = $1 }
        option("--disk-backend") { $0.diskBackend = $1 }
        option("--pids") { $0.pids = try value($1) }
        option("--cpus") { $0.cpus = try value($1) }
        option("--rlimit") { $0.resourceLimits.append(try OptionValue.resourceLimit($1)) }
        option("--ports") { $0.ports = try OptionValue.portSet($1) }
        flag("--ports-exclusive") { $0.portsExclusive = true }
        option("--address") { $0.addresses.append($1) }
        flag("--address-shared") { $0.addressShared = true }
        option("--loopback") { $0.loopback = $1 }
        option("--loopback-pool") { $0.loopbackPool = $1 }
        flag("--allow-host-loopback") { $0.allowHostLoopback = true }
        flag("--map-root") { $0.mapRoot = true }
        option("--accept-env") { $0.acceptEnvironment.append($1) }
        option("--base") { $0.base = $1 }
        flag("--no-userns") { $0.noUserns = true }
        option("--userns-pool") { $0.usernsPool = try OptionValue.userRangePool($1) }
        option("--jail-name") { $0.jailName = $1 }
        flag("--syslog") { $0.syslog = true }
        flag("--no-syslog") { $0.syslog = false }
        option("--views") { $0.views = try value($1) }
        option("--lxcfs-directory") { $0.lxcfsDirectory = $1 }
        option("--cpuset") { $0.cpuset = try OptionValue.cpuSet($1) }
        option("--shm-size") { $0.shmSize = try OptionValue.shmSize($1) }
        option("--syslog-target") { $0.syslogTarget = $1 }
        option("--service") { $0.services.append(try OptionValue.service($1)) }
        flag("-c", "--foreground") { $0.foreground = true }
        option("--rc") { $0.rc = $1 }
        option("--rc-stop") { $0.rcStop = $1 }
        option("--rc-timeout") { $0.rcTimeout = try value($1) }
        flag("--rc-required") { $0.rcRequired = true }
        option("--runlevel") { $0.runlevel = $1 }
        option("--init") { $0.payload = $1 }
        option("--init-timeout") { $0.payloadTimeout = try value($1) }
        flag("--init-required") { $0.payloadRequired = true }
        flag("--allow-aio") { $0.allowAio = true }
        flag("--forward-x11") { $0.forwardX11 = true }
        flag("--forward-agent") { $0.forwardAgent = true }
        flag("--no-forward-agent") { $0.forwardAgent = false }
        return table
    }()
}
