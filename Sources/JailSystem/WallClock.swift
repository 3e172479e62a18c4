#if canImport(Glibc)
import Glibc
#endif

/// The seconds of the wall clock since the epoch (time(2)): a date shown to people or
/// written for them; deadlines use `monotonicMilliseconds`.
public func wallClockSeconds() -> Int64 {
    Int64(time(nil))
}

/// CLOCK_REALTIME with its nanoseconds, for a record that keeps both (utmp's ut_tv).
public func wallClockTime() -> timespec {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return now
}

/// A time in UTC, broken down (gmtime_r(3)).
public struct UTCTime: Equatable, Sendable {
    public let year, month, day, hour, minute, second: Int

    /// nil for a time gmtime_r cannot express (a year past Int32).
    public init?(secondsSinceEpoch seconds: Int64) {
        var t = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&t, &parts) != nil else { return nil }
        (year, month, day) = (Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday))
        (hour, minute, second) = (Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }
}
