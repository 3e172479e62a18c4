import ArgumentParser
@testable import jaild
import XCTest

/// StartArguments (a start's command line read without ArgumentParser) against ArgumentParser's
/// own parse of StartCommand: the same command for every option, or nil and the old parse.
final class StartArgumentsTests: XCTestCase {
    /// A valid value of every option that takes one, as a config file or an operator writes it.
    static let samples: [String: String] = [
        "socket-prefix": "/run/jail/x", "uid": "61000", "gid": "61001", "name": "tenant", "root": "/srv/jail",
        "shell": "/bin/sh", "mount": "/data=/srv/data:ro", "hostname": "box", "stop-timeout": "3",
        "max-sessions": "12", "handshake-timeout": "7", "boot": "sleep 1", "boot-restart": "always",
        "cap": "NET_BIND_SERVICE", "memory": "512M", "disk": "1G", "disk-inodes": "1000", "disk-backend": "image",
        "pids": "64", "cpus": "0.5", "rlimit": "nofile=64:128", "ports": "tcp:25,udp:53", "address": "192.0.2.10",
        "loopback": "127.0.1.2", "loopback-pool": "127.3.0.0/16", "accept-env": "LC_*", "base": "/srv/base",
        "userns-pool": "1073741824:655360", "jail-name": "shop", "views": "off", "lxcfs-directory": "/var/lib/lxcfs",
        "cpuset": "0-1", "shm-size": "32M", "syslog-target": "/run/log", "service": "/run/db.sock=/run/host/db.sock",
        "rc": "/etc/rc.jail", "rc-stop": "/etc/rc.stop", "rc-timeout": "30", "runlevel": "3", "init": "/sbin/init",
        "init-timeout": "20",
    ]

    /// Every name of StartCommand's options and flags, as ArgumentParser has them.
    func declaredNames() throws -> [(names: [String], isFlag: Bool)] {
        let help = try XCTUnwrap(StartCommand._dumpHelp().data(using: .utf8))
        let tool = try XCTUnwrap(try JSONSerialization.jsonObject(with: help) as? [String: Any])
        let command = try XCTUnwrap(tool["command"] as? [String: Any])
        let arguments = try XCTUnwrap(command["arguments"] as? [[String: Any]])
        return arguments.compactMap { argument in
            guard let kind = argument["kind"] as? String, kind != "positional",
                  let names = argument["names"] as? [[String: Any]] else { return nil }
            let spelled = names.compactMap { name -> String? in
                guard let text = name["name"] as? String, let nameKind = name["kind"] as? String else { return nil }
                return nameKind == "short" ? "-" + text : "--" + text
            }
            return (spelled, kind == "flag")
        }
    }

    /// Both parses of one command line, as text of every option's value: StartArguments'
    /// StartOptions, and ArgumentParser's StartCommand handed over as StartOptions (which also
    /// checks that hand-over). nil for ArgumentParser's when it refuses the line (the fast
    /// parse must give nil too).
    func both(_ arguments: [String]) throws -> (fast: String?, parsed: String?) {
        let parsed = (try? StartCommand.parseAsRoot(arguments)).flatMap { $0 as? StartCommand }
        return (StartArguments.parse(arguments).map(Self.text), parsed.map { Self.text($0.options) })
    }

    static func text(_ options: StartOptions) -> String {
        Mirror(reflecting: options).children.map { "\($0.label ?? "?")=\($0.value)" }.joined(separator: "\n")
    }

    /// StartCommand's properties and StartOptions' are the same names, in the same order.
    func testStartOptionsHoldEveryPropertyOfStartCommand() {
        let declared = Mirror(reflecting: StartCommand()).children.map { String(($0.label ?? "").dropFirst()) }
        XCTAssertEqual(Mirror(reflecting: StartOptions()).children.map { $0.label ?? "" }, declared)
    }

    func testEveryOptionOfStartCommandIsReadTheSame() throws {
        var seen: Set<String> = []
        for (names, isFlag) in try declaredNames() {
            // Help and --version print and exit, --config is expanded before the parse: they
            // are left to ArgumentParser.
            if names.contains("--version") || names.contains("--config") || names.contains("--help") {
                for name in names { XCTAssertFalse(StartArguments.optionNames.contains(name) || StartArguments.flagNames.contains(name), name) }
                continue
            }
            for name in names {
                seen.insert(name)
                XCTAssertTrue((isFlag ? StartArguments.flagNames : StartArguments.optionNames).contains(name),
                              "\(name) is \(isFlag ? "a flag" : "an option") of StartCommand, not of StartArguments")
                let long = names.first { $0.hasPrefix("--") } ?? name
                // A root: --service and --init need one.
                let base = long == "--uid" ? ["-r", "/srv/jail"] : ["-u", "61000", "-r", "/srv/jail"]
                var lines: [[String]]
                if isFlag {
                    lines = [base + [name]]
                } else {
                    let sample = try XCTUnwrap(Self.samples[String(long.dropFirst(2))], "no sample value for \(long)")
                    lines = [base + [name, sample]]
                    if name.hasPrefix("--") { lines.append(base + ["\(name)=\(sample)"]) }
                }
                for line in lines {
                    let (fast, parsed) = try both(line)
                    // --map-root is refused to root by both (it is for rootless jails).
                    if long != "--map-root" { XCTAssertNotNil(parsed, "\(line)") }
                    XCTAssertEqual(fast, parsed, "\(line)")
                }
            }
        }
        let read = StartArguments.optionNames + StartArguments.flagNames
        XCTAssertEqual(read.count, Set(read).count, "a name twice in StartArguments")
        XCTAssertEqual(Set(read), seen, "StartArguments reads an option StartCommand does not have")
    }

    func testDefaultsRepeatsAndALineOfMany() throws {
        let lines: [[String]] = [
            ["-u", "62000"],
            ["-u", "62000", "-r", "/srv/r", "-a", "/tmp/p", "--hostname", "b62000", "--stop-timeout", "2", "--views", "off",
             "--no-syslog"],
            // A config's options come first, the command line's after: the last of a single
            // option wins, repeatable ones add up, a flag and its --no- form: the last.
            ["--uid", "1", "--hostname", "a", "-m", "/a=/b", "--boot", "x", "--syslog", "--no-syslog", "--uid=2",
             "--hostname", "b", "-m", "/c=/d:ro", "--boot", "y", "--no-forward-agent", "--forward-agent", "--syslog"],
            ["-u", "5", "--rc", "a b", "--rc-required", "-c"],
        ]
        for line in lines {
            let (fast, parsed) = try both(line)
            XCTAssertNotNil(fast, "\(line)")
            XCTAssertEqual(fast, parsed, "\(line)")
        }
    }

    func testWhatItDoesNotReadGoesToArgumentParser() {
        for line: [String] in [
            [], ["--uid"], ["-u", "x"], ["-u", "-5"], ["-u", "5", "--bogus"], ["-u", "5", "extra"], ["-u", "5", "--"],
            ["-cu", "5"], ["-u5"], ["-u", "5", "--version"], ["-u", "5", "-h"], ["-u", "5", "--help"],
            ["-u", "5", "--stop-timeout", "-1"], ["-u", "5", "--max-sessions", "0"], ["-u", "5", "--memory", "lots"],
            ["-u", "5", "--foreground=yes"], ["-u", "5", "--views", "sometimes"], ["-u", "5", "--hostname", "--root"],
            ["-u", "5", "--config", "/etc/jail/x.conf"], ["-u", "5", "--cpus", "0"], ["-u", "5", "--hostname="],
            ["-u", "5", "--map-root"],
        ] {
            XCTAssertNil(StartArguments.parse(line), "\(line)")
        }
    }
}
