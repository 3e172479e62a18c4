import JailIO
import JailSystem

/// Gives back the pages of jaild's own file that a loop has stopped using, once the loop has
/// been idle for a second. Start-up and each session's set-up run megabytes of code that an
/// idle supervisor or init never runs again; released, those pages leave the process's
/// resident set (they stay in the page cache) and come back with a minor fault if needed.
/// The release happens in the same C call as the next sleep (`pollReleasingFilePages`):
/// code run between the two would fault its pages back, and each such fault maps 16 pages
/// (measured: 704 KiB of the supervisor's RSS came back that way).
/// The same release also gives back the heap's free pages (malloc_trim), the stack below the
/// sleeping frame, and the page tables of the code it unmaps (CJail/memory.c says how): at 300
/// idle busybox tenants, supervisor + init + spare went from 1.14 to 0.88 MiB PSS and from 186
/// to 152 KiB of page tables per tenant (the syslog relay, now started at the first message,
/// SyslogRelay+Init.swift, apart).
struct IdlePages {
    static let delayMilliseconds: Int32 = 1000

    /// Whether the loop has run since the last release.
    private var used = true
    /// Whether the next wait releases first: the loop was idle a whole delay.
    private(set) var releasesBeforeNextWait = false

    /// Waits on `poller` as `Poller.wait` does (nil on a poll error), releasing first when due.
    @discardableResult
    mutating func wait(_ poller: inout Poller, timeout loopTimeout: Int32) -> Bool? {
        let release = takeRelease()
        let woke: Bool?
        if release {
            woke = try? poller.wait(timeout: timeout(loopTimeout), using: { pollReleasingFilePages($0, $1, $2) })
        } else {
            woke = try? poller.wait(timeout: timeout(loopTimeout))
        }
        afterWait(woke: woke ?? true)
        return woke
    }

    /// Whether this wait is to release first (then the next is not, unless idle again).
    mutating func takeRelease() -> Bool {
        defer { releasesBeforeNextWait = false }
        return releasesBeforeNextWait
    }

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
            releasesBeforeNextWait = true
            used = false
        }
    }
}
