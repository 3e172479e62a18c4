import JailProtocol
import JailSystem
import SystemPackage
/// The words on init's root-only socket (`…-UID-GID.ctl`), which serves two callers: a new
/// supervisor that adopts a jail whose supervisor died (docs/architecture.md, "Adoption"), and
/// `jaild enter`, host root asking for a session (`isEnterRequest`, OperatorEntry's words).
///
/// init listens on a host-side socket next to the jail's socket (`…-UID-GID.ctl`, root's,
/// mode 0600), bound by the supervisor before the clone. One line each way:
///
///     supervisor → init   "jail-adopt 1\n"                 + SCM_RIGHTS: the new lifeline
///                         "jail-proof 1\n"                 + SCM_RIGHTS: an open
///                                                          OperatorEntry.proofDirectory
///     init → supervisor   "jail-init 1 start=S pidns=P dropped=N orphaned=T\n"
///                                                          + SCM_RIGHTS: log and boot pipes
///     or                  "jail-init 1 refused REASON\n"
///
/// The number is the channel's version: a supervisor and an init of different versions do not
/// adopt (the jail runs on unsupervised; it is never half-adopted). `start` and `pidns` are
/// init's own identity, compared with the state file's.
///
/// The proof (OperatorProof: only host root can open that directory for reading) came without
/// a change of version, in a message of its own: an init from before it reads only the first
/// (a unix stream socket never joins two messages that carry descriptors) and answers, so a new
/// jaild still adopts it; an older jaild, which sends none, is refused by a new init with the
/// line "no proof of host root came with the request" (the jail runs on unsupervised).
enum AdoptionAndEntryChannel {
    static let version = 1

    /// The adoption socket of the jail whose socket is `socketPath`.
    static func controlPath(socketPath: String) -> String {
        (socketPath.hasSuffix(".sock") ? String(socketPath.dropLast(5)) : socketPath) + ".ctl"
    }

    static var request: [UInt8] { Array("jail-adopt \(version)\n".utf8) }

    /// The message that carries the proof of host root, after the request.
    static var proof: [UInt8] { Array("jail-proof \(version)\n".utf8) }

    static func isProof(_ bytes: [UInt8]) -> Bool { bytes == proof }

    /// The supervisor's second message: the proof. nil when sent, else why not.
    static func sendProof(_ connection: FileDescriptor) -> JailError? {
        do {
            let directory = try OperatorProof.open()
            defer { directory.closeQuietly() }
            _ = try JailError.wrap { () throws(SystemError) in try UnixSocket.send(connection, proof, passing: [directory.rawValue]) }
            return nil
        } catch {
            return error
        }
    }

    /// The version a request asks for, nil if it is not a request.
    static func requestedVersion(_ bytes: [UInt8]) -> Int? {
        let words = String(decoding: bytes, as: UTF8.self)[...].trimmingWhitespace().split(separator: " ")
        guard words.count == 2, words[0] == "jail-adopt" else { return nil }
        return Int(words[1])
    }

    /// `jaild enter`: root on the host asks for a session on this root-only socket (with the
    /// same proof), then sends the usual hello once init has said `OperatorEntry.accepted`.
    static func isEnterRequest(_ bytes: [UInt8]) -> Bool {
        let words = String(decoding: bytes, as: UTF8.self)[...].trimmingWhitespace().split(separator: " ")
        return words.count == 2 && words[0] == OperatorEntry.requestWord && Int(words[1]) == OperatorEntry.version
    }

    static func reply(start: UInt64, pidNamespace: String, dropped: Int, orphanedSeconds: Int64) -> [UInt8] {
        Array("jail-init \(version) start=\(start) pidns=\(pidNamespace) dropped=\(dropped) orphaned=\(orphanedSeconds)\n".utf8)
    }

    static func refusal(_ reason: String) -> [UInt8] { Array("jail-init \(version) refused \(reason)\n".utf8) }

    /// init's answer, as the supervisor reads it.
    struct Reply: Equatable {
        var version: Int
        var refused: String?
        var fields: [String: String] = [:]
    }

    static func parseReply(_ bytes: [UInt8]) -> Reply? {
        let line = String(decoding: bytes, as: UTF8.self)[...].trimmingWhitespace()
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count >= 2, words[0] == "jail-init", let version = Int(words[1]) else { return nil }
        if words.count >= 3 && words[2] == "refused" {
            return Reply(version: version, refused: words.dropFirst(3).joined(separator: " "))
        }
        var reply = Reply(version: version)
        for word in words.dropFirst(2) {
            guard let equals = word.firstIndex(of: "=") else { continue }
            reply.fields[String(word[..<equals])] = String(word[word.index(after: equals)...])
        }
        return reply
    }
}
