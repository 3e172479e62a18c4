import JailSystem

/// Why `jaild create`, `destroy` or `base` did nothing (or undid what it did): one line for the
/// operator, with the failure underneath kept typed (crun's `crun_error_wrap` idea) instead of
/// turned into text where it happened.
public enum ProvisionError: Error, CustomStringConvertible {
    /// A request refused, or a state found that provisioning will not touch: the operator's words.
    case refused(String)
    /// A system call that failed: "mkdir(/srv/jail/web): Permission denied".
    case system(SystemError)
    /// A system call that failed while provisioning was doing `context`: "context: reason".
    case failed(String, SystemError)
    /// A lower layer's typed error (a disk, a program, the jail's passwd), with what
    /// provisioning was doing; nil when the error's own line says it all.
    case cause(String?, any Error)

    public var description: String {
        switch self {
        case .refused(let message): message
        case .system(let error): error.description
        case .failed(let context, let error): "\(context): \(error.errno)"
        case .cause(let context?, let error): "\(context): \(error)"
        case .cause(nil, let error): "\(error)"
        }
    }

    /// A lower layer's error as it reads.
    static func from(_ error: any Error) -> ProvisionError {
        if let error = error as? ProvisionError { return error }
        if let error = error as? SystemError { return .system(error) }
        return .cause(nil, error)
    }
}
