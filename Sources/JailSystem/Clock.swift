#if canImport(Glibc)
import Glibc
#endif

/// Milliseconds of CLOCK_MONOTONIC: deadlines and durations that a change of the wall clock
/// cannot move.
public func monotonicMilliseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}

/// Sleeps `milliseconds` (a retry's pause, where no descriptor can say when to try again).
public func sleepMilliseconds(_ milliseconds: Int) {
    usleep(useconds_t(milliseconds * 1000))
}

/// The current time in UTC as ISO 8601 to the second (`2026-12-06T23:30:40Z`), as a log line
/// is stamped.
public func utcTimestamp() -> String {
    var now = time(nil)
    var parts = tm()
    gmtime_r(&now, &parts)
    var stamp = [CChar](repeating: 0, count: 32)
    let length = strftime(&stamp, stamp.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
    return String(decoding: stamp.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
