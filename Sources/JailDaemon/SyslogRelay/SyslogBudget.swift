/// How much of a jail's syslog the relay forwards in one second: at most `messages` messages
/// and `bytes` bytes (counted as the host receives them, after the rewrite). A count of
/// messages alone let one jail user push 7.6 MiB a second of 8 KiB messages into the host's
/// log (28 GiB an hour); the byte budget bounds that to 256 KiB a second (900 MiB an hour),
/// which is still 1,000 messages of a typical 250 bytes. What does not fit is counted, to be
/// reported once a second. Pure, so it is unit-tested.
struct SyslogBudget {
    static let defaultMessages = 1000
    static let defaultBytes = 256 << 10

    let messages: Int
    let bytes: Int
    private(set) var windowStart: Int64 = 0
    private(set) var forwardedMessages = 0
    private(set) var forwardedBytes = 0
    private(set) var droppedMessages = 0
    private(set) var droppedBytes = 0

    init(messages: Int = defaultMessages, bytes: Int = defaultBytes) {
        self.messages = messages
        self.bytes = bytes
    }

    /// What was dropped in a window that has ended: the relay reports it in one message.
    struct Drops: Equatable {
        let messages: Int
        let bytes: Int
    }

    /// Starts a new one-second window if the current one is over; returns its drops, if any.
    mutating func tick(now: Int64) -> Drops? {
        guard now - windowStart >= 1000 else { return nil }
        let drops = droppedMessages > 0 ? Drops(messages: droppedMessages, bytes: droppedBytes) : nil
        windowStart = now
        forwardedMessages = 0
        forwardedBytes = 0
        droppedMessages = 0
        droppedBytes = 0
        isSpent = false
        return drops
    }

    /// Nothing more is forwarded in this second: the relay drops what comes without rewriting
    /// it, so a flood costs a recv per message and no more.
    private(set) var isSpent = false

    /// Whether a message of `size` bytes may be forwarded now (it must fit whole). The first
    /// one that does not fit ends the second: else every later message of a flood would be
    /// rewritten only to be found too big.
    mutating func fits(_ size: Int) -> Bool {
        if !isSpent && forwardedBytes + size > bytes { isSpent = true }
        return !isSpent
    }

    mutating func forwarded(_ size: Int) {
        forwardedMessages += 1
        forwardedBytes += size
        if forwardedMessages >= messages || forwardedBytes >= bytes { isSpent = true }
    }

    mutating func dropped(_ size: Int) {
        droppedMessages += 1
        droppedBytes += size
    }

    /// How long the relay may wait for the next message: until the window ends while drops
    /// wait to be reported; else forever.
    func timeout(now: Int64) -> Int32 {
        droppedMessages > 0 ? Int32(max(1, windowStart + 1000 - now)) : -1
    }
}
