#if canImport(Glibc)
import Glibc
#endif

/// The seconds of the wall clock since the epoch (time(2)): a date shown to people or
/// written for them; deadlines use `monotonicMilliseconds`.
public func wallClockSeconds() -> Int64 {
    Int64(time(nil))
}
