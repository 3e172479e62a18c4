import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The service relay: "jaild: service relay", a child of init that serves the jail's
/// `--service` sockets and carries each connection to the host's socket, after a PROXY v2
/// header (ProxyHeader) that says which jail and which of its processes is calling. The
/// identity is the socket: one relay and one listener per jail, never shared, so nothing a
/// tenant sends can name another jail (its bytes come after the header, as payload).
///
/// Why a process of its own: it reads what any program of the jail sends, and init never does
/// (if PID 1 dies the jail dies); a crash here costs the jail its services (init logs it).
/// Where it stands: forked by init after the supervisor has moved init into its cgroup ("C")
/// and before init hardens itself, so it is in init's cgroup (not the programs': a jail at its
/// memory or pids limit still reaches the host's service, and its flood costs its own relay's
/// CPU, one core at most, single-threaded) and outside the jail programs' seccomp filter and
/// Landlock domain, which it does not need: it keeps only its listeners, the O_PATH directories
/// of the host's sockets and stderr, then becomes the jail's nobody with no capabilities and
/// is non-dumpable, so neither root inside nor its own uid can read its descriptors through
/// /proc. A child of init, it outlives jaild and is adopted with the jail: connections in
/// flight go on across a supervisor's restart.
struct ServiceRelay {
    let endpoints: [ServiceEndpoint]
    let jail: String
    /// The read end of a pipe whose write end init holds and closes at the jail's stop. The
    /// relay is forked before init enters its Landlock domain, whose signal scope then keeps
    /// init's kill(-1, SIGTERM) from reaching it: its end of file is the relay's stop.
    var stopSignal: Int32 = -1
    var connections: [ServiceConnection] = []
    var active: [Int]
    var downLog: [RateLimitedLog]

    /// How long a host service with a full backlog may keep a tenant waiting.
    static let connectTimeout: Int64 = 1000
    /// At most this many accepts per service and round: one flooded socket cannot starve another.
    static let acceptBatch = 32

    /// After "C", as the jail's root: binds the jail's service sockets and forks the relay
    /// (rootless, it stays the user: no other id is mapped). Returns its pid and the write end
    /// of its stop pipe (`stopSignal`), which init closes at stop; (0, nil) without services.
    static func start(_ configuration: JailConfiguration, account: Account,
                      hostDirectories: [FileDescriptor]) throws(JailError) -> (pid: pid_t, stop: FileDescriptor?) {
        guard !configuration.services.isEmpty else { return (0, nil) }
        let endpoints = try ServiceEndpoint.bindAll(configuration.services, hostDirectories: hostDirectories)
        return try start(endpoints: endpoints, jail: configuration.name(account: account), dropTo: !configuration.rootless)
    }

    /// Forks the relay; init closes its copies of every descriptor the relay took.
    static func start(endpoints: [ServiceEndpoint], jail: String, dropTo nobody: Bool) throws(JailError) -> (pid: pid_t, stop: FileDescriptor?) {
        let stop = try JailError.wrap { () throws(SystemError) in try Pipe.make() }
        func closeRelaysDescriptors() {
            stop.read.closeQuietly()
            for endpoint in endpoints {
                endpoint.listener.closeQuietly()
                endpoint.hostDirectory.closeQuietly()
            }
        }
        let pid: pid_t
        do { pid = try forkProcess() } catch {
            closeRelaysDescriptors()
            stop.write.closeQuietly()
            throw .failed("--service: fork of the relay", error)
        }
        if pid == 0 {
            stop.write.closeQuietly()
            var relay = ServiceRelay(endpoints: endpoints, jail: jail, stopSignal: stop.read.rawValue,
                                     active: endpoints.map { _ in 0 }, downLog: endpoints.map { _ in RateLimitedLog() })
            relay.run(dropTo: nobody)
        }
        closeRelaysDescriptors()
        return (pid, stop.write)
    }

    mutating func run(dropTo nobody: Bool) -> Never {
        let keep: [Int32] = endpoints.flatMap { [$0.listener.rawValue, $0.hostDirectory.rawValue] } + [2, stopSignal]
        closeDescriptors(keeping: keep)
        // init blocks its signals for its signalfd; the relay dies of SIGTERM at the jail's stop.
        resetSignalHandling()
        setProcessTitle("jaild: service relay")
        // It never executes anything; an empty bounding set says so to any later exec. Before
        // the uid change: dropping needs CAP_SETPCAP, which that change takes away.
        do { try dropBoundingSet(keeping: 0) } catch {
            // Rootless the relay is the jail's user, with no capability to drop (nor CAP_SETPCAP).
            if nobody {
                log.error("service relay: prctl(PR_CAPBSET_DROP): \(error.errno)")
                _exit(1)
            }
        }
        if nobody {
            // The jail's nobody: no capability over the jail's files, "other" to the host's.
            do { try becomeUser(uid: 65534, gid: 65534) } catch {
                log.error("service relay: cannot become nobody: \(error.errno)")
                _exit(1)
            }
        }
        // After the uid change, which resets it. Without it root inside could read the
        // relay's descriptors through /proc: no relay rather than an open one.
        do { try Hardening.forbidDumps() } catch {
            log.error("service relay: \(error)")
            _exit(1)
        }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: ByteQueue.limit, alignment: 16)
        defer { scratch.deallocate() }
        var polls: [pollfd] = []
        func add(_ fd: Int32, _ events: Int16) -> Int {
            polls.append(pollfd(fd: fd, events: events, revents: 0))
            return polls.count - 1
        }
        var tenantIndex: [Int] = []
        var hostIndex: [Int] = []
        while true {
            polls.removeAll(keepingCapacity: true)
            tenantIndex.removeAll(keepingCapacity: true)
            hostIndex.removeAll(keepingCapacity: true)
            let stopIndex = add(stopSignal, Int16(POLLIN))
            let listeners = endpoints.map { add($0.listener.rawValue, Int16(POLLIN)) }
            var waitingForBacklog = false
            for connection in connections {
                tenantIndex.append(connection.host == nil ? -1 : add(connection.tenant.rawValue, connection.tenantEvents))
                let hostEvents = connection.hostEvents
                hostIndex.append(connection.host.map { hostEvents == 0 ? -1 : add($0.rawValue, hostEvents) } ?? -1)
                if connection.host == nil { waitingForBacklog = true }
            }
            // A host service's full backlog is polled for every 10 ms (a unix connect that said
            // EAGAIN is tried again; poll cannot wait for room in another's backlog).
            // EINTR and the like: the next round polls again.
            _ = polls.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), waitingForBacklog ? 10 : -1) }
            // init closed the pipe: the jail stops (connections in flight end with the relay).
            if polls[stopIndex].revents != 0 { _exit(0) }
            var index = 0
            while index < connections.count {
                let tenantEvents = tenantIndex[index] >= 0 ? polls[tenantIndex[index]].revents : 0
                let hostEvents = hostIndex[index] >= 0 ? polls[hostIndex[index]].revents : 0
                var gone = false
                if connections[index].host == nil {
                    gone = !retryConnect(index)
                } else if connections[index].step(tenantRevents: tenantEvents, hostRevents: hostEvents, scratch: scratch) == .done {
                    closeConnection(index)
                    gone = true
                }
                if gone {
                    tenantIndex.remove(at: index)
                    hostIndex.remove(at: index)
                    continue
                }
                index += 1
            }
            for (service, listenIndex) in listeners.enumerated() where polls[listenIndex].revents != 0 { acceptAll(service) }
        }
    }

    mutating func acceptAll(_ service: Int) {
        let endpoint = endpoints[service]
        for _ in 0..<Self.acceptBatch {
            guard let tenant = try? UnixSocket.accept(endpoint.listener) else { return }
            guard active[service] < endpoint.spec.maxConnections else {
                downLog[service].note(jail: jail, service: endpoint.spec.jailPath, reason: "\(endpoint.spec.maxConnections) connections are open (max=)")
                tenant.closeQuietly()
                continue
            }
            var header: [UInt8] = []
            if endpoint.spec.header == .proxy {
                guard let peer = try? UnixSocket.peerCredentials(tenant) else {
                    tenant.closeQuietly()
                    continue
                }
                header = ProxyHeader.make(jail: jail, uid: peer.uid, pid: peer.pid, jailPath: endpoint.spec.jailPath)
            }
            var connection = ServiceConnection(tenant: tenant, host: nil, service: service,
                                               deadline: monotonicMilliseconds() + Self.connectTimeout)
            connection.toHost.append(header)
            connections.append(connection)
            active[service] += 1
            retryConnect(connections.count - 1)
        }
    }

    /// Connects a waiting connection to the host's socket, or gives up on it: refused, missing
    /// (the service is down) or past its deadline close the tenant's connection at once.
    /// Returns false when the connection was closed (and removed).
    @discardableResult
    mutating func retryConnect(_ index: Int) -> Bool {
        let connection = connections[index]
        let endpoint = endpoints[connection.service]
        switch Self.connectNonBlocking(endpoint.hostConnectPath) {
        case .connected(let host):
            connections[index].host = host
            return true
        case .busy where monotonicMilliseconds() < connection.deadline:
            return true
        case .busy:
            downLog[connection.service].note(jail: jail, service: endpoint.spec.jailPath, reason: "\(endpoint.spec.hostPath): no room in its backlog for \(Self.connectTimeout) ms")
            closeConnection(index)
            return false
        case .failed(let error):
            downLog[connection.service].note(jail: jail, service: endpoint.spec.jailPath, reason: "connect \(endpoint.spec.hostPath): \(error)")
            closeConnection(index)
            return false
        }
    }

    mutating func closeConnection(_ index: Int) {
        let connection = connections.remove(at: index)
        active[connection.service] -= 1
        connection.close()
    }

    enum ConnectResult {
        case connected(FileDescriptor)
        case busy
        case failed(Errno)
    }

    static func connectNonBlocking(_ path: String) -> ConnectResult {
        do { return try UnixSocket.connectNonBlocking(path: path).map(ConnectResult.connected) ?? .busy } catch {
            return .failed(error.errno)
        }
    }
}

/// One line per service at most every 10 seconds for refused connections, with how many were
/// refused since: a tenant hammering a service that is down cannot flood the host's log.
struct RateLimitedLog {
    static let interval: Int64 = 10_000
    var lastLine: Int64 = -interval
    var suppressed = 0

    mutating func note(jail: String, service: String, reason: String) {
        let now = monotonicMilliseconds()
        guard now - lastLine >= Self.interval else {
            suppressed += 1
            return
        }
        var fields = [("jail", jail), ("service", service), ("reason", reason)]
        if suppressed > 0 { fields.append(("also_refused", "\(suppressed)")) }
        log.warning("\(Logfmt.line("service connection refused", fields))")
        lastLine = now
        suppressed = 0
    }
}
