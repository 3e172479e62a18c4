import ArgumentParser
import JailDaemon

/// A start's command line read without ArgumentParser, into StartOptions: its parse reflects
/// every option of `StartCommand` through the Swift runtime's type lookups, about 3.4 ms of a
/// 9 ms busybox start on the 2-core test VM (`jaild --version` 4.7 ms against 1.3 ms for
/// `jaild list`, which skips it). Only the plain forms are read here: `--opt value`, `--opt=value`,
/// `-x value`, flags. Anything else (help, --version, a positional, `--`, joined short
/// flags, an unknown option, a value that does not parse, a value that starts with `-`, a
/// failing validate()) gives nil, and ArgumentParser parses the line as before, with its own
/// error. StartArgumentsTests keeps these names and setters equal to StartCommand's, option by option.
enum StartArguments {
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
            if flagNames.contains(name) {
                guard attached == nil, set(flag: name, in: &command) else { return nil }
            } else if optionNames.contains(name) {
                let value: String
                if let attached {
                    value = attached
                } else {
                    guard index < arguments.count, !arguments[index].hasPrefix("-") else { return nil }
                    value = arguments[index]
                    index += 1
                }
                do { try set(name, value, in: &command) } catch { return nil }
            } else {
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

    /// The names of the options that take a value, and of the flags. --config is not here: the
    /// config expansion has replaced it by the file's options before the parse (ConfigExpansion).
    /// Arrays and a switch, not a table of closures: building that was a tenth of a millisecond
    /// of each start (the first use of its dictionary and closure types, Swift runtime lookups).
    static let optionNames: [String] = [
        "-a", "--socket-prefix", "-u", "--uid", "-g", "--gid", "-n", "--name", "-r", "--root", "-s", "--shell", "-m",
        "--mount", "--hostname", "--stop-timeout", "--max-sessions", "--handshake-timeout", "--boot",
        "--boot-restart", "--cap", "--memory", "--disk", "--disk-inodes", "--disk-backend", "--pids", "--cpus",
        "--rlimit", "--ports", "--address", "--loopback", "--loopback-pool", "--accept-env", "--base",
        "--userns-pool", "--jail-name", "--views", "--lxcfs-directory", "--cpuset", "--shm-size", "--syslog-target",
        "--service", "--rc", "--rc-stop", "--rc-timeout", "--runlevel", "--init", "--init-timeout",
    ]

    static let flagNames: [String] = [
        "--ports-exclusive", "--address-shared", "--allow-host-loopback", "--map-root", "--no-userns", "--syslog",
        "--no-syslog", "-c", "--foreground", "--rc-required", "--init-required", "--allow-aio", "--forward-x11",
        "--forward-agent", "--no-forward-agent",
    ]

    /// Sets option `name` (one of optionNames) to `text`, as ArgumentParser would.
    static func set(_ name: String, _ text: String, in o: inout StartOptions) throws {
        switch name {
        case "-a", "--socket-prefix": o.socketPrefix = text
        case "-u", "--uid": o.uid = try value(text)
        case "-g", "--gid": o.gid = try value(text)
        case "-n", "--name": o.userName = text
        case "-r", "--root": o.root = text
        case "-s", "--shell": o.shell = text
        case "-m", "--mount": o.mounts.append(try OptionValue.bindMount(text))
        case "--hostname": o.hostname = text
        case "--stop-timeout": o.stopTimeout = try value(text)
        case "--max-sessions": o.maxSessions = try value(text)
        case "--handshake-timeout": o.handshakeTimeout = try value(text)
        case "--boot": o.bootCommands.append(text)
        case "--boot-restart": o.bootRestart = try value(text)
        case "--cap": o.capabilities.append(try OptionValue.capability(text))
        case "--memory": o.memory = try OptionValue.memorySize(text)
        case "--disk": o.disk = text
        case "--disk-inodes": o.diskInodes = text
        case "--disk-backend": o.diskBackend = text
        case "--pids": o.pids = try value(text)
        case "--cpus": o.cpus = try value(text)
        case "--rlimit": o.resourceLimits.append(try OptionValue.resourceLimit(text))
        case "--ports": o.ports = try OptionValue.portSet(text)
        case "--address": o.addresses.append(text)
        case "--loopback": o.loopback = text
        case "--loopback-pool": o.loopbackPool = text
        case "--accept-env": o.acceptEnvironment.append(text)
        case "--base": o.base = text
        case "--userns-pool": o.usernsPool = try OptionValue.userRangePool(text)
        case "--jail-name": o.jailName = text
        case "--views": o.views = try value(text)
        case "--lxcfs-directory": o.lxcfsDirectory = text
        case "--cpuset": o.cpuset = try OptionValue.cpuSet(text)
        case "--shm-size": o.shmSize = try OptionValue.shmSize(text)
        case "--syslog-target": o.syslogTarget = text
        case "--service": o.services.append(try OptionValue.service(text))
        case "--rc": o.rc = text
        case "--rc-stop": o.rcStop = text
        case "--rc-timeout": o.rcTimeout = try value(text)
        case "--runlevel": o.runlevel = text
        case "--init": o.payload = text
        case "--init-timeout": o.payloadTimeout = try value(text)
        default: throw ValidationError("\(name) is not an option of jaild start")
        }
    }

    /// Sets flag `name` (one of flagNames); false for another name.
    static func set(flag name: String, in o: inout StartOptions) -> Bool {
        switch name {
        case "--ports-exclusive": o.portsExclusive = true
        case "--address-shared": o.addressShared = true
        case "--allow-host-loopback": o.allowHostLoopback = true
        case "--map-root": o.mapRoot = true
        case "--no-userns": o.noUserns = true
        case "--syslog": o.syslog = true
        case "--no-syslog": o.syslog = false
        case "-c", "--foreground": o.foreground = true
        case "--rc-required": o.rcRequired = true
        case "--init-required": o.payloadRequired = true
        case "--allow-aio": o.allowAio = true
        case "--forward-x11": o.forwardX11 = true
        case "--forward-agent": o.forwardAgent = true
        case "--no-forward-agent": o.forwardAgent = false
        default: return false
        }
        return true
    }
}
