import ArgumentParser
import JailDaemon
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// `jaild create`, `jaild destroy`, `jaild base list`: argument parsing by hand, because
/// create passes any further jaild option through into the jail's config file.
enum ProvisionCommands {
    static let createUsage = "usage: jaild create NAME --uid UID [--gid GID] --base BASE [--user USER] [--key FILE] "
        + "[--shell SH] [--copy] [jaild option…]"

    /// Options of create itself (each takes a value), and keys create writes on its own.
    static let ownOptions: Set<String> = ["uid", "gid", "base", "user", "key", "shell"]
    static let reservedKeys: Set<String> = ["uid", "gid", "name", "root", "base", "shell"]
    static let shortOptions: [Character: String] = ["a": "socket-prefix", "m": "mount", "c": "foreground"]

    static func create(_ arguments: [String]) -> Int32 {
        guard let name = arguments.first, !name.hasPrefix("-") else { ControlCommands.fail(createUsage, code: 2) }
        var own: [String: String] = [:]
        var copy = false
        var options: [(key: String, value: String)] = []
        var i = 1
        while i < arguments.count {
            var argument = arguments[i]
            i += 1
            var inline: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                inline = String(argument[argument.index(after: equals)...])
                argument = String(argument[..<equals])
            }
            let key: String
            if argument.hasPrefix("--") {
                key = String(argument.dropFirst(2))
            } else if argument.count == 2, argument.hasPrefix("-"), let long = shortOptions[argument.last!] {
                key = long
            } else {
                ControlCommands.fail("create: unexpected argument '\(argument)'", code: 2)
            }
            if key == "copy" {
                copy = true
                continue
            }
            let takesValue = ownOptions.contains(key) || ConfigFile.keys[key] == true
            guard ownOptions.contains(key) || (ConfigFile.keys[key] != nil && !reservedKeys.contains(key)) else {
                ControlCommands.fail("create: option --\(key) is not one create takes or writes into the config", code: 2)
            }
            var value = "yes"
            if takesValue {
                if let inline { value = inline } else {
                    guard i < arguments.count else { ControlCommands.fail("create: --\(key) needs a value", code: 2) }
                    value = arguments[i]
                    i += 1
                }
                guard !value.isEmpty, !value.contains("\n") else { ControlCommands.fail("create: --\(key) needs a value", code: 2) }
            }
            if ownOptions.contains(key) { own[key] = value } else { options.append((key, value)) }
        }
        guard let uidText = own["uid"], let uid = UInt32(uidText) else { ControlCommands.fail("create: --uid UID is required (a number)", code: 2) }
        guard let base = own["base"] else { ControlCommands.fail("create: --base BASE is required", code: 2) }
        // Each option is checked as jaild would check it from the config, so a bad one is
        // refused here, before anything exists.
        for option in options {
            let pair = ConfigFile.keys[option.key] == true ? ["--\(option.key)", option.value] : ["--\(option.key)"]
            do { _ = try JailDaemonCommand.parse(["--uid", "1"] + pair) } catch {
                let message = JailDaemonCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
                ControlCommands.fail("create: \(message)", code: 2)
            }
        }
        var request = JailCreation(name: name, uid: uid, base: base, jailBinary: jailBinary())
        if let gid = own["gid"] {
            guard let number = UInt32(gid) else { ControlCommands.fail("create: --gid must be a number", code: 2) }
            request.gid = number
        }
        request.user = own["user"] ?? "work"
        request.keyFile = own["key"]
        request.shell = own["shell"]
        request.copy = copy
        request.options = options
        do {
            print(try Provision.create(request, paths: .fromEnvironment()))
            return 0
        } catch {
            ControlCommands.fail("create \(name): \(error)")
        }
    }

    static func destroy(_ arguments: [String]) -> Int32 {
        let usage = "usage: jaild destroy NAME --yes [--keep-data]"
        guard let name = arguments.first, !name.hasPrefix("-") else { ControlCommands.fail(usage, code: 2) }
        let flags = Set(arguments.dropFirst())
        guard flags.isSubset(of: ["--yes", "--keep-data"]) else { ControlCommands.fail(usage, code: 2) }
        guard flags.contains("--yes") else {
            ControlCommands.fail("destroy \(name) removes its files and its host account: add --yes", code: 2)
        }
        do {
            print(try Provision.destroy(name: name, keepData: flags.contains("--keep-data"), paths: .fromEnvironment()))
            return 0
        } catch {
            ControlCommands.fail("destroy \(name): \(error)")
        }
    }

    static func base(_ arguments: [String]) -> Int32 {
        guard arguments == ["list"] else { ControlCommands.fail("usage: jaild base list", code: 2) }
        print(Provision.baseTable(Provision.bases(paths: .fromEnvironment())), terminator: "")
        return 0
    }

    /// The `jail` client beside this jaild (or in ../bin of an sbin): the host account's login shell.
    static func jailBinary() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return "/usr/local/bin/jail" }
        let path = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/") else { return "/usr/local/bin/jail" }
        let directory = String(path[..<slash])
        // jaild in an sbin directory (/usr/local/sbin), jail in the bin beside it.
        if access(directory + "/jail", X_OK) != 0 && directory.hasSuffix("/sbin") {
            return String(directory.dropLast(4)) + "bin/jail"
        }
        return directory + "/jail"
    }
}
