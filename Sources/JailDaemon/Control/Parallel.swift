#if canImport(Glibc)
import Glibc
#endif

/// The per-jail reads of `jaild list` and `jaild metrics` spread over the machine's CPUs: at
/// 2,000 jails they are tens of thousands of small syscalls into /proc, cgroupfs and the
/// state directory, each independent of the others, and one thread did them one at a time.
///
/// Threads are allowed here only because these verbs run in a short-lived CLI process that
/// never forks without exec, never unshares, never becomes init or a session helper (the
/// rule of one thread in STYLE.md is for those): every thread started here is joined before
/// `map` returns, so the process is single-threaded again afterwards.
enum Parallel {
    /// At most this many threads: the threads share the descriptor table and the dentries
    /// they walk, and more than this was never measured (the test VM has 2 CPUs).
    static let maximumThreads = 8
    /// Items per thread below which no thread is started: a few jails are listed in well under
    /// a millisecond (a row costs ~40 µs of CPU at 2,000 jails), which a thread would not cut.
    static let minimumPerThread = 32
    /// Consecutive items a thread takes at a time: its results are written side by side.
    static let block = 16

    /// `body(0) … body(count - 1)` in order, computed by up to `maximumThreads` threads (one
    /// per online CPU). `body` must be safe to call from several threads at once: it reads,
    /// and shares nothing it mutates.
    static func map<T>(_ count: Int, threads requested: Int = processors, _ body: (Int) -> T) -> [T] {
        let threads = max(1, min(requested, maximumThreads, count / minimumPerThread))
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            withoutActuallyEscaping(body) { body in
                guard let base = buffer.baseAddress else { return }
                // Thread t computes blocks t, t + threads, t + 2 × threads …: every index once.
                let results = Results(base)
                func stripe(_ t: Int) {
                    var start = t * block
                    while start < count {
                        for index in start..<min(start + block, count) { (results.base + index).initialize(to: body(index)) }
                        start += threads * block
                    }
                }
                var started: [pthread_t] = []
                for t in 1..<threads {
                    // A thread that cannot be started: its stripe is computed on this one.
                    if let thread = startThread({ stripe(t) }) { started.append(thread) } else { stripe(t) }
                }
                stripe(0)
                for thread in started { pthread_join(thread, nil) }
            }
            initialized = count
        }
    }

    /// The CPUs online, at least 1 (sched_getaffinity, which would honour a narrower mask, is
    /// not in Swift's Glibc; a thread too many costs little).
    static var processors: Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// The results' storage, written by several threads at distinct indices.
    private struct Results<T>: @unchecked Sendable {
        let base: UnsafeMutablePointer<T>
        init(_ base: UnsafeMutablePointer<T>) { self.base = base }
    }

    /// What a started thread runs; joined before `map` returns, so the closure's captures
    /// (non-escaping in `map`) outlive it.
    private final class Job: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    private static func startThread(_ run: @escaping () -> Void) -> pthread_t? {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(Job(run)).toOpaque()
        let result = pthread_create(&thread, nil, { context in
            guard let context else { return nil }
            Unmanaged<Job>.fromOpaque(context).takeRetainedValue().run()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<Job>.fromOpaque(context).release()
            return nil
        }
        return thread
    }
}
