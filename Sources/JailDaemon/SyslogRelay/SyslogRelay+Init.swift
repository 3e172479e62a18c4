import JailSystem

/// init's side of the syslog relay: started when the jail first logs, not with the jail.
///
/// Why: a jail with nothing running does not log, and the relay is a fourth process in every
/// tenant (measured at 50 idle busybox tenants, idle pages already given back: 0.28 MiB PSS, 51
/// KiB of page tables and a 16 KiB kernel stack each). So init binds /dev/log at start as before
/// and watches it in its loop, without reading it (init never reads a byte a program sent:
/// SyslogRelay says why); the first datagram makes it fork the relay, which finds that datagram,
/// and any sent since, in the socket's queue. Nothing is lost meanwhile: the queue holds
/// `net.unix.max_dgram_qlen` datagrams (10 by default), and a sender finding it full waits (or,
/// non-blocking, gets EAGAIN, as with a busy relay) for one turn of init's loop.
/// The exception is `--rc`: init waits for the rc outside its loop, and an rc that logged more
/// than the queue holds would hang until its timeout; with an rc the relay starts with the jail.
/// Once started, the relay runs until the jail stops, as it always did.
extension Init {
    /// The relay now (`startNow`), or `endpoint` left for the loop to watch.
    mutating func serveSyslog(_ endpoint: SyslogRelay.Endpoint, startNow: Bool) throws(JailError) {
        guard startNow else {
            syslogEndpoint = endpoint
            return
        }
        children[try SyslogRelay.start(endpoint)] = .syslogRelay
    }

    /// The jail's /dev/log has a datagram waiting: the relay, now. A fork that fails costs the
    /// jail its syslog, as a relay that died does, and is said as that is.
    mutating func startSyslogRelay() {
        guard let endpoint = syslogEndpoint else { return }
        syslogEndpoint = nil
        do { children[try SyslogRelay.start(endpoint)] = .syslogRelay } catch {
            log.error("the syslog relay did not start (\(error)): the jail's /dev/log is not served")
        }
    }
}
