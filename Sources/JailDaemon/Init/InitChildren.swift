#if canImport(Glibc)
import Glibc
#endif

/// What one of init's own children is: what its end means depends on it (Init+Stop.swift's
/// `reapAll`). Orphans of the jail reparented to init are not in the table: their end means
/// nothing.
enum InitChild: Equatable {
    /// A session helper forked ahead of the next session (Init+Spare.swift).
    case spare
    /// The helper of session `id` (a spare handed its connection is one too). `operator`: host
    /// root's session through the control socket (`jaild enter`), in slots of its own beyond
    /// `--max-sessions`, so a tenant holding every session cannot lock the operator out.
    case sessionHelper(id: Int, operator: Bool)
    /// A spare or helper init killed after it failed a hand-off: its session went to a new
    /// helper, and its end is no session's.
    case dismissed
    /// `--boot` command number `index` (Init+Boot.swift).
    case bootService(index: Int)
    /// `--rc-stop`, which the stop waits for (Init+Services.swift).
    case rcStop
    /// `--init`: the payload's keeper (Payload.swift).
    case payloadKeeper
    /// `--syslog`'s relay (SyslogRelay).
    case syslogRelay
    /// `--service`'s relay (ServiceRelay).
    case serviceRelay
}

/// init's children by pid, each with its kind: one table instead of a set or a variable per
/// kind, so a pid is one thing at a time and every kind's end is handled in one place.
struct InitChildren: Equatable {
    private(set) var byPid: [pid_t: InitChild] = [:]

    subscript(pid: pid_t) -> InitChild? {
        get { byPid[pid] }
        set { byPid[pid] = newValue }
    }

    /// Takes the child out of the table (it was reaped); its kind, if it was one of init's.
    mutating func remove(_ pid: pid_t) -> InitChild? {
        byPid.removeValue(forKey: pid)
    }

    /// The pid of the one child of `kind` (a relay, rc-stop, the keeper), if it runs.
    func pid(of kind: InitChild) -> pid_t? {
        byPid.first { $0.value == kind }?.key
    }

    /// The session helpers alive now, the spare's and the operator's included once they serve.
    var helpers: [pid_t] {
        byPid.compactMap { if case .sessionHelper = $0.value { $0.key } else { nil } }
    }

    func isHelper(_ pid: pid_t) -> Bool {
        if case .sessionHelper = byPid[pid] { return true }
        return false
    }

    /// The sessions `--max-sessions` counts: the tenant's (every helper but the operator's).
    var tenantSessions: Int {
        byPid.values.count(where: { if case .sessionHelper(_, operator: false) = $0 { true } else { false } })
    }

    /// Host root's sessions through the control socket, in slots of their own.
    var operatorSessions: Int {
        byPid.values.count(where: { if case .sessionHelper(_, operator: true) = $0 { true } else { false } })
    }
}
