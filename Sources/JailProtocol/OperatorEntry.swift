/// `jaild enter` asks init for a session on the jail's root-only control socket (the one a new
/// supervisor adopts a jail through, `-UID-GID.ctl`): one request line, one answer line, then
/// the session protocol of docs/protocol.md on the same connection.
///
/// Host root is known by what comes with the request: an open descriptor of `proofDirectory`,
/// root's 0700 directory, which only host root can open for reading. init recorded that
/// directory's identity before pivot_root and compares (JailDaemon's OperatorProof). The peer's
/// uid cannot tell: a user namespace shows host root, like every host uid it does not map, as
/// the overflow uid.
public enum OperatorEntry {
    public static let version = 1
    public static let requestWord = "jail-enter"
    public static var request: [UInt8] { Array("\(requestWord) \(version)\n".utf8) }
    /// init's answer; the client sends its hello only after it.
    public static var accepted: [UInt8] { Array("jail-init \(version) enter\n".utf8) }

    /// init's answer when it does not start the session.
    public static func refusal(_ reason: String) -> [UInt8] { Array("jail-init \(version) refused \(reason)\n".utf8) }

    /// The reason of a refusal line, nil for anything else.
    public static func refusalReason(_ line: [UInt8]) -> String? {
        let prefix = Array("jail-init \(version) refused ".utf8)
        guard line.count > prefix.count, Array(line.prefix(prefix.count)) == prefix else { return nil }
        var reason = Array(line.dropFirst(prefix.count))
        if reason.last == 10 { reason.removeLast() }
        return String(decoding: reason, as: UTF8.self)
    }

    /// Root's 0700 directory whose open descriptor proves its sender is host root, on the
    /// control socket (operator entry and adoption alike). jaild makes it before a jail starts.
    public static let proofDirectory = "/run/jail/operator"
}
