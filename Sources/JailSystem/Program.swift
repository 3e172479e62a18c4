import CJail

#if canImport(Glibc)
import Glibc
#endif

/// How a host program that jaild ran (useradd, cp) ended: its shell-style status and what it
/// wrote to stdout and stderr, for a one-line error.
public struct ProgramResult: Equatable, Sendable {
    public let status: Int32
    public let output: String

    /// The program's last line of output, or its status: what a user sees when it failed.
    public var reason: String {
        let last = output.split(separator: "\n").last.map { String($0.trimmingWhitespace()) } ?? ""
        return last.isEmpty ? "exit status \(status)" : last
    }
}

/// Runs a program to completion with the caller's ids, stdin /dev/null, stdout and stderr
/// collected (at most 64 KiB). The child is CJail's spawn child (async-signal-safe until
/// execve); `environment` replaces the caller's, so nothing of it steers the program.
public func runProgram(
    _ path: String, _ arguments: [String], environment: [String] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]
) throws(SystemError) -> ProgramResult {
    var ends: [Int32] = [-1, -1]
    try syscall("pipe2") { cj_pipe(&ends) }
    let devNull = open("/dev/null", O_RDWR | O_CLOEXEC)
    if devNull < 0 {
        close(ends[0])
        close(ends[1])
        throw SystemError.last("open", path: "/dev/null")
    }
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup($0) } + [nil]
    defer {
        for p in argv + envp { free(p) }
    }
    var step: Int32 = 0
    var error: Int32 = 0
    let pid: pid_t = argv.withUnsafeBufferPointer { argvBuffer in
        envp.withUnsafeBufferPointer { envpBuffer in
            path.withCString { cPath in
                var request = cj_spawn_request()
                request.path = cPath
                request.argv = argvBuffer.baseAddress
                request.envp = envpBuffer.baseAddress
                request.stdio = (devNull, ends[1], ends[1])
                request.uid = getuid()
                request.gid = getgid()
                request.skip_setgroups = 1
                request.directory = nil
                return cj_spawn(&request, &step, &error)
            }
        }
    }
    close(ends[1])
    close(devNull)
    if pid < 0 {
        close(ends[0])
        throw SystemError(step == Int32(CJ_STEP_EXEC.rawValue) ? "execve" : "spawn", path: path, errno: .init(rawValue: error))
    }
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(ends[0], $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        if output.count < 65536 { output += buffer[..<n] }
    }
    close(ends[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return ProgramResult(status: cj_status_to_code(status), output: String(decoding: output, as: UTF8.self))
}
