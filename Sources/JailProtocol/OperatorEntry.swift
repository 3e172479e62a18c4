/// `jaild enter` asks init for a session on the jail's root-only control socket (the one a new
/// supervisor adopts a jail through, `-UID-GID.ctl`): one request line, one answer line, then
/// the session protocol of docs/protocol.md on the same connection. Host root is known by that
/// socket, also where a user namespace shows it only as the overflow uid on the jail's own.
public enum OperatorEntry {
    public static let version = 1
    public static let requestWord = "jail-enter"
    public static var request: [UInt8] { Array("\(requestWord) \(version)\n".utf8) }
    /// init's answer; the client sends its hello only after it.
    public static var accepted: [UInt8] { Array("jail-init \(version) enter\n".utf8) }
}
