import CJail
import JailIO
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What lets init outlive its supervisor: the jail is the tenants', jaild is only its keeper.
///
/// The lifeline's read end tells init its supervisor is gone (EOF): init then keeps serving
/// sessions, signals nobody, and drains its own log pipe and the boot commands' pipe so that
/// nothing in the jail blocks on a full pipe or dies of EPIPE (init holds their read ends for
/// exactly that). Those lines are dropped; the count is logged once a new supervisor adopts
/// the jail through the adoption socket (AdoptionAndEntryChannel) and gets both pipes' read ends.
struct InitAdoption {
    let control: FileDescriptor
    var lifeline: FileDescriptor
    let logRead: FileDescriptor
    let bootRead: FileDescriptor
    /// What proves a peer is host root (OperatorProof), recorded before pivot_root.
    let proof: OperatorProof
    var supervised = true
    var bootOpen = true
    var dropped = 0
    /// `jail-enter` connections of host root, proven, not answered yet: init answers each with the
    /// go-ahead or the reason it refuses (Init.startOperatorSession).
    var operatorSessions: [FileDescriptor] = []
    var orphanedAt: Int64 = 0

    /// Indexes in the poller of what this watches, -1 where nothing.
    struct Watch {
        var lifeline = -1
        var control = -1
        var log = -1
        var boot = -1
    }

    func addPolls(_ poller: inout Poller) -> Watch {
        var watch = Watch()
        watch.control = poller.add(control.rawValue, read: true)
        if supervised {
            watch.lifeline = poller.add(lifeline.rawValue, read: true)
        } else {
            watch.log = poller.add(logRead.rawValue, read: true)
            if bootOpen { watch.boot = poller.add(bootRead.rawValue, read: true) }
        }
        return watch
    }

    mutating func handle(_ poller: Poller, _ watch: Watch) {
        if watch.lifeline >= 0 && poller.readable(watch.lifeline) { noticeLifeline() }
        if watch.log >= 0 && poller.readable(watch.log) { _ = drain(logRead) }
        if watch.boot >= 0 && poller.readable(watch.boot) { bootOpen = drain(bootRead) }
        if poller.readable(watch.control) { acceptAdopters() }
    }

    /// EOF on the lifeline: the supervisor died (a stop would have come as SIGTERM first).
    mutating func noticeLifeline() {
        // A byte (none is sent after setup) or nothing yet: still there. End of file, or an
        // error of the pipe: gone.
        let gone: Bool
        do { gone = try lifeline.readChunk(max: 1)?.isEmpty ?? false } catch { gone = true }
        guard gone else { return }
        supervised = false
        orphanedAt = monotonicMilliseconds()
        try? logRead.setNonBlocking(true)
        try? bootRead.setNonBlocking(true)
    }

    /// Reads and drops what is waiting. Returns false at EOF.
    mutating func drain(_ fd: FileDescriptor) -> Bool {
        while true {
            guard let chunk = try? fd.readChunk(max: 65536) else { return true }
            if chunk.isEmpty { return false }
            dropped += chunk.count
        }
    }

    mutating func acceptAdopters() {
        while let connection = try? UnixSocket.accept(control) {
            if answer(connection) { operatorSessions.append(connection) } else { connection.closeQuietly() }
        }
    }

    /// Connections of root on the host that asked for a session (`jaild enter`), for init to
    /// hand to a helper: this root-only socket is how host root is known, even where a user
    /// namespace shows it only as the overflow uid on the jail's own socket.
    mutating func takeOperatorSessions() -> [FileDescriptor] {
        defer { operatorSessions = [] }
        return operatorSessions
    }

    /// One request on the control socket, answered at once (an operator's session is answered
    /// by init, which counts the sessions). The socket is the host root's, mode 0600, in a
    /// directory the jail cannot see; the peer must also be outside the jail's PID namespace
    /// (pid 0 here), so no process of the jail adopts it even if the directory is bound in, and
    /// it must pass the proof that it is host root (OperatorProof: with an operator's request,
    /// or in the message after an adoption request). Each message is read with a short bound,
    /// so init never waits long. Every
    /// refusal is answered with its reason and logged.
    /// Returns true when the connection is an operator's session to start (`jail-enter`).
    mutating func answer(_ connection: FileDescriptor) -> Bool {
        guard let peer = try? UnixSocket.peerCredentials(connection) else { return false }
        // Before anything is read (init would wait for it): outside the jail, and a uid host root
        // can have here (init's own, or the overflow uid a user namespace shows for it). That
        // only narrows; the proof is the exact test.
        guard peer.pid == 0, peer.uid == getuid() || peer.uid == 65534 else {
            return refuse(connection, peer, peer.pid != 0 ? "the peer is pid \(peer.pid) inside the jail" : "the peer is uid \(peer.uid)")
        }
        guard let message = Self.receiveWithin2s(connection) else { return refuse(connection, peer, "no request within 2 s") }
        let isEnter = AdoptionAndEntryChannel.isEnterRequest(message.bytes)
        let version = AdoptionAndEntryChannel.requestedVersion(message.bytes)
        // The proof: the last descriptor of an operator's request; an adoption request's own
        // next message (AdoptionAndEntryChannel).
        let proofMessage = version != nil ? Self.receiveWithin2s(connection) : nil
        var adoptedLifeline: Int32 = -1
        defer { for fd in message.fds + (proofMessage?.fds ?? []) where fd != adoptedLifeline { closeDescriptor(fd) } }
        guard isEnter || version != nil else { return refuse(connection, peer, "not a request of this control socket") }
        let proofDescriptor = isEnter ? message.fds.last
            : proofMessage.flatMap { AdoptionAndEntryChannel.isProof($0.bytes) ? $0.fds.last : nil }
        guard let proofDescriptor, proof.isProvenBy(proofDescriptor) else {
            return refuse(connection, peer, "no proof of host root came with the request (an open \(OperatorEntry.proofDirectory))")
        }
        // The client sends its hello only after init's answer: nothing of it was read here.
        if isEnter { return true }
        guard version == AdoptionAndEntryChannel.version else {
            return refuse(connection, peer, "adoption channel version \(version ?? 0) is not this init's (\(AdoptionAndEntryChannel.version))")
        }
        if supervised { noticeLifelineNow() }
        guard !supervised else { return refuse(connection, peer, "the jail's supervisor is alive") }
        guard message.fds.count == 1 else { return refuse(connection, peer, "no lifeline came with the request") }
        guard let me = ProcessIdentity.of("self") else { return refuse(connection, peer, "cannot read /proc/self") }
        let seconds = (monotonicMilliseconds() - orphanedAt) / 1000
        let reply = AdoptionAndEntryChannel.reply(start: me.startTime, pidNamespace: me.pidNamespace, dropped: dropped,
                                          orphanedSeconds: seconds)
        guard (try? UnixSocket.send(connection, reply, passing: [logRead.rawValue, bootRead.rawValue])) != nil else { return false }
        // From here the new supervisor reads both pipes; if it dies at once, its lifeline says so.
        lifeline.closeQuietly()
        lifeline = FileDescriptor(rawValue: message.fds[0])
        adoptedLifeline = message.fds[0]
        supervised = true
        log.info("adopted by a new supervisor after \(seconds) s without one; \(dropped) bytes of log output were dropped meanwhile")
        dropped = 0
        return false
    }

    /// One message of the peer's, waited for at most 2 s (init serves nobody meanwhile, and only
    /// host root gets this far).
    static func receiveWithin2s(_ connection: FileDescriptor) -> (bytes: [UInt8], fds: [Int32])? {
        guard (try? connection.waitReadable(milliseconds: 2000)) == true, let message = try? UnixSocket.receive(connection, max: 256, maxDescriptors: 2),
              !message.bytes.isEmpty else { return nil }
        return message
    }

    /// A request on the control socket refused: the reason to the peer and to the log.
    func refuse(_ connection: FileDescriptor, _ peer: PeerCredentials, _ reason: String) -> Bool {
        log.warning("\(Logfmt.line("control socket request refused", [("peer_pid", "\(peer.pid)"), ("peer_uid", "\(peer.uid)"), ("reason", reason)]))")
        _ = try? UnixSocket.send(connection, AdoptionAndEntryChannel.refusal(reason), passing: [])
        return false
    }

    /// Whether the lifeline has closed, without waiting.
    mutating func noticeLifelineNow() {
        if (try? lifeline.isReadable()) == true { noticeLifeline() }
    }

    /// A session helper or boot command has no use for any of these.
    func closeInChild() {
        for fd in [control, lifeline, logRead, bootRead] { fd.closeQuietly() }
    }
}
