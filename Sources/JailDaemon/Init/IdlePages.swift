import CJail

/// Gives back the pages of jaild's own file that a loop has stopped using, once the loop has
/// been idle for a second. Start-up and each session's set-up run megabytes of code that an
/// idle supervisor or init never runs again; released, those pages leave the process's
/// resident set (they stay in the page cache) and come back with a minor fault if needed.
struct IdlePages {
    static let delayMilliseconds: Int32 = 1000

    /// Whether the loop has run since the last release.
    private var used = true

    /// The poll timeout to use instead of `timeout` (milliseconds, -1 for none).
    func timeout(_ timeout: Int32) -> Int32 {
        guard used else { return timeout }
        return timeout < 0 ? Self.delayMilliseconds : min(timeout, Self.delayMilliseconds)
    }

    /// Call after each poll with whether anything was ready.
    mutating func afterWait(woke: Bool) {
        if woke {
            used = true
        } else if used {
            cj_release_file_pages()
            used = false
        }
    }
}
