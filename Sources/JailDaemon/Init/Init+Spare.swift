import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The spare session helper, init's side. A session used to begin with init forking a helper,
/// which then joined its cgroup and made its signalfd while the client waited. Now one helper is
/// forked and set up ahead of time (SessionHelper+Spare.swift); a client's connection is handed
/// to it over a socketpair.
/// The next spare is forked once that session's program runs (the helper closes the socketpair
/// then): forked at once, its warm-up took a CPU from the session it was meant to speed up.
/// init still accepts, checks the peer and counts the sessions itself, so nothing about who may
/// enter changes.
struct SpareHelper {
    let pid: pid_t
    /// init's end of the socketpair the connection travels through.
    let channel: FileDescriptor
}

extension Init {
    /// Forks a spare if there is none, none is on its way and the jail may take one more session.
    mutating func forkSpare() {
        guard spare == nil, startingSession == nil, !stopping, helpers.count < configuration.maxSessions else { return }
        guard let (mine, theirs) = try? UnixSocket.pair() else { return }
        // Else the spare would keep the data pages init only read, mapped, for as long as it waits.
        cj_release_data_file_pages()
        let pid = fork()
        if pid == 0 {
            mine.closeQuietly()
            listener.closeQuietly()
            signals.fd.closeQuietly()
            adoption?.closeInChild()
            SessionHelper.waitAsSpare(channel: theirs, configuration: configuration, settings: programSettings,
                                      jail: jailName, sessionCgroups: sessionCgroups)
        }
        theirs.closeQuietly()
        guard pid > 0 else {
            log.error("fork of a spare session helper: \(Errno(rawValue: errno))")
            mine.closeQuietly()
            return
        }
        spare = SpareHelper(pid: pid, channel: mine)
    }

    /// Gives the connection to the spare, which becomes session `id`'s helper. False if there
    /// is no spare or it could not take it (it died): the caller forks a helper instead.
    mutating func handToSpare(_ connection: FileDescriptor, id: Int, hostRoot: Bool) -> Bool {
        guard let current = spare else { return false }
        spare = nil
        let message = SpareHandOff(id: id, hostRoot: hostRoot).bytes
        let sent = (try? UnixSocket.send(current.channel, message, passing: [connection.rawValue])) == message.count
        guard sent else {
            current.channel.closeQuietly()
            // Not reaped yet (reapAll clears `spare` when it is), so the pid is still ours.
            kill(current.pid, SIGKILL)
            return false
        }
        helpers.insert(current.pid)
        sessionIDs[current.pid] = id
        startingSession?.channel.closeQuietly()
        startingSession = current
        return true
    }

    /// The last spare's session has its program running, or its helper is gone: the next
    /// spare may come now.
    mutating func sessionStarted() {
        startingSession?.channel.closeQuietly()
        startingSession = nil
        forkSpare()
    }

    /// At stop, or when it died: a spare that holds no session just goes (its end of file
    /// ends it, SIGKILL in case it is stopped).
    mutating func dismissSpare() {
        startingSession?.channel.closeQuietly()
        startingSession = nil
        guard let current = spare else { return }
        spare = nil
        current.channel.closeQuietly()
        kill(current.pid, SIGKILL)
    }
}
