/// init's stop as data: the step it is in, and what each event makes init do next.
///
/// The order, each step bounded by the stop timeout (`--stop-timeout`):
/// 1. init stops serving (the listener closes, the spare goes);
/// 2. `--init`: `--rc-stop` runs inside the payload while it is up (it may ask systemd for
///    things), then the payload halts, so its services stop as on a shutdown. Without a
///    payload, `--rc-stop` runs now;
/// 3. SIGTERM (and SIGCONT) to every process of the jail: the grace;
/// 4. SIGKILL to all but the session helpers, which then report their programs' status (137)
///    to their clients: a short grace of their own;
/// 5. SIGKILL to everything, and init exits.
/// At any step past the first, no child left means init exits: with 0, or with the status a
/// payload's own poweroff asked for (`exitCode`).
///
/// A pure value: no clock, no signal, no process. init feeds it events with the time and
/// carries out the actions it answers (Init+Stop.swift); an action that may fail (starting
/// rc-stop, asking the payload to halt) answers with an event of its own when it does. So the
/// whole sequence is unit-tested without root (StopSequenceTests), as the Relay is.
struct StopSequence: Equatable {
    enum Phase: Equatable {
        /// Not stopping: init serves sessions.
        case serving
        /// `--init`: rc-stop runs inside the payload; the payload's halt waits for it.
        case rcStopBeforeHalt(until: Int64)
        /// The payload was asked to halt (its services' ExecStop run); the rest waits for it.
        case haltingPayload(until: Int64)
        /// rc-stop without a payload: the SIGTERM to everything waits for it.
        case rcStop(until: Int64)
        /// SIGTERM has gone to everything: what is left when this ends is killed.
        case terminating(until: Int64)
        /// SIGKILL has gone to everything but the session helpers: their grace.
        case killingPrograms(until: Int64)
        /// Nothing is left to wait for: init exits with this status.
        case finished(Int32)
    }

    enum Event: Equatable {
        /// The host's kill (SIGTERM from outside the jail), or the payload's own end.
        /// `payloadUp`: a payload runs that must halt (its keeper is there, it has not stopped).
        case stopAsked(payloadUp: Bool)
        /// `startRCStop` found no rc-stop to run, or it could not start.
        case rcStopDidNotStart
        /// `haltPayload` could not ask the payload (no payload any more, its pipe closed).
        case payloadHaltNotSent
        /// The rc-stop process exited (reaped).
        case rcStopEnded
        /// `--init`: the payload is down (it ended, or its keeper exited).
        case payloadDown
        /// The loop's timeout: the current step's deadline may have passed.
        case deadlinePassed
        /// init has no child left (waitid found none).
        case noChildrenLeft
    }

    enum Action: Equatable {
        /// Close the listener and dismiss the spare: no new session from now on.
        case stopServing
        /// Start `--rc-stop`; answer `rcStopDidNotStart` when there is none or it did not start.
        case startRCStop
        /// Ask the payload to halt; answer `payloadHaltNotSent` when it could not be asked.
        case haltPayload
        /// SIGKILL to rc-stop, which outlived its time.
        case killRCStop
        /// The payload did not halt in time: its whole PID namespace is killed.
        case killPayload
        case logWarning(Notice)
        /// SIGTERM and SIGCONT to every process of the jail; the service relay's stop closed.
        case terminateAll
        /// SIGSTOP to everything, SIGKILL to all but the session helpers, SIGCONT to those.
        case killPrograms
        /// SIGKILL to everything, and every child reaped.
        case killEverything
        /// Nothing is left: the loop returns this status, and init exits with it.
        case exitNow(Int32)
    }

    /// The warnings of a stop that had to force a step.
    enum Notice: Equatable {
        case rcStopLateBeforeHalt
        case rcStopLate
        case processesOutlivedTerm

        func text(stopTimeoutSeconds: Int) -> String {
            switch self {
            case .rcStopLateBeforeHalt: "rc-stop did not finish within \(stopTimeoutSeconds)s: halting the payload anyway"
            case .rcStopLate: "rc-stop did not finish within \(stopTimeoutSeconds)s: stopping the jail anyway"
            case .processesOutlivedTerm: "processes still running after \(stopTimeoutSeconds)s: killing them"
            }
        }
    }

    /// How long each step may take (`--stop-timeout`).
    let stopTimeout: Int64
    /// `--init`: the jail has a payload, and rc-stop runs only inside it (while it is up).
    let withPayload: Bool
    /// How long the session helpers have to report their programs' end after the SIGKILL.
    static let helperGrace: Int64 = 2000

    private(set) var phase: Phase = .serving
    /// init's status once the stop is over: 0, or `Init.payloadPoweredOff` when the stop was
    /// the payload's own (`systemctl poweroff` inside), set before the stop is asked.
    var exitCode: Int32 = 0

    init(stopTimeoutMilliseconds: Int64, withPayload: Bool) {
        self.stopTimeout = stopTimeoutMilliseconds
        self.withPayload = withPayload
    }

    var isStopping: Bool { phase != .serving }

    /// The status init exits with, once the stop is over.
    var exitStatus: Int32? {
        if case .finished(let code) = phase { return code }
        return nil
    }

    /// When the current step gives up waiting (monotonic ms), for the loop's timeout.
    var deadline: Int64? {
        switch phase {
        case .serving, .finished: nil
        case .rcStopBeforeHalt(let until), .haltingPayload(let until), .rcStop(let until),
             .terminating(let until), .killingPrograms(let until): until
        }
    }

    /// The next step for `event` at monotonic time `now`, and what init must do for it, in order.
    mutating func handle(_ event: Event, now: Int64) -> [Action] {
        switch (event, phase) {
        case (_, .finished):
            return []
        case (.stopAsked(let payloadUp), .serving):
            if payloadUp {
                phase = .rcStopBeforeHalt(until: now + stopTimeout)
                return [.stopServing, .startRCStop]
            }
            return [.stopServing] + afterPayload(now)
        case (.stopAsked, _):
            return []
        case (_, .serving):
            // A child's end or a deadline before any stop: not the stop's business.
            return []

        case (.rcStopDidNotStart, .rcStopBeforeHalt), (.rcStopEnded, .rcStopBeforeHalt):
            return halt(now)
        case (.rcStopDidNotStart, .rcStop), (.rcStopEnded, .rcStop):
            return terminate(now)
        case (.payloadHaltNotSent, .haltingPayload):
            return terminate(now)
        case (.payloadDown, .rcStopBeforeHalt), (.payloadDown, .haltingPayload):
            // The payload ended on its own (rc-stop may have powered it off): the rest now.
            return terminate(now)

        case (.deadlinePassed, _):
            guard let deadline, now >= deadline else { return [] }
            return deadlinePassed(now)

        case (.noChildrenLeft, _):
            phase = .finished(exitCode)
            return [.exitNow(exitCode)]

        default:
            // A late answer or end (rc-stop reaped after the SIGTERM, the payload's end after
            // its kill): the step it belonged to is over.
            return []
        }
    }

    private mutating func deadlinePassed(_ now: Int64) -> [Action] {
        switch phase {
        case .rcStopBeforeHalt:
            return [.logWarning(.rcStopLateBeforeHalt), .killRCStop] + halt(now)
        case .haltingPayload:
            return [.killPayload] + terminate(now)
        case .rcStop:
            // rc-stop is not killed alone: the SIGTERM to everything reaches it too.
            return [.logWarning(.rcStopLate)] + terminate(now)
        case .terminating:
            phase = .killingPrograms(until: now + Self.helperGrace)
            return [.logWarning(.processesOutlivedTerm), .killPrograms]
        case .killingPrograms:
            phase = .finished(exitCode)
            return [.killEverything, .exitNow(exitCode)]
        case .serving, .finished:
            return []
        }
    }

    /// The payload halts; the rest waits for it.
    private mutating func halt(_ now: Int64) -> [Action] {
        phase = .haltingPayload(until: now + stopTimeout)
        return [.haltPayload]
    }

    /// With the payload down (or none): rc-stop if the jail has no payload (with one, it ran
    /// inside while the payload was up), then SIGTERM to the rest.
    private mutating func afterPayload(_ now: Int64) -> [Action] {
        if withPayload { return terminate(now) }
        phase = .rcStop(until: now + stopTimeout)
        return [.startRCStop]
    }

    private mutating func terminate(_ now: Int64) -> [Action] {
        phase = .terminating(until: now + stopTimeout)
        return [.terminateAll]
    }
}
