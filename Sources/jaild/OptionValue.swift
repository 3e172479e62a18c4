import ArgumentParser
import JailDaemon

/// The start options' value types, each parsed once by its own parser as ArgumentParser reads
/// the argument (a config file's lines go through the same options: ConfigExpansion). A
/// parser's error becomes the usage error's reason, with the option's name.
enum OptionValue {
    static func capability(_ text: String) throws -> Int {
        do { return try Capability.parse(text) } catch { throw ValidationError(error.description) }
    }

    static func memorySize(_ text: String) throws -> UInt64 {
        guard let bytes = ByteSize.parse(text) else { throw ValidationError("--memory '\(text)' is not a size like 512M") }
        return bytes
    }

    static func resourceLimit(_ text: String) throws -> ResourceLimit {
        do { return try ResourceLimit.parse(text) } catch { throw ValidationError(error.description) }
    }

    static func portSet(_ text: String) throws -> PortSet {
        do { return try PortSet.parse(text) } catch { throw ValidationError(error.description) }
    }

    static func userRangePool(_ text: String) throws -> UserRangePool {
        do { return try UserRangePool.parse(text) } catch { throw ValidationError(error.description) }
    }

    static func service(_ text: String) throws -> ServiceSpec {
        do { return try ServiceSpec.parse(text) } catch { throw ValidationError(error.description) }
    }

    static func cpuSet(_ text: String) throws -> [Int] {
        guard let cpus = CPUSet.parse(text) else { throw ValidationError("--cpuset '\(text)' is not a CPU list like 0-1,3") }
        return cpus
    }

    static func shmSize(_ text: String) throws -> UInt64 {
        guard let bytes = ByteSize.parse(text) else { throw ValidationError("--shm-size '\(text)' is not a size like 256M") }
        return bytes
    }

    static func bindMount(_ text: String) throws -> BindMount {
        do { return try BindMount.parse(text) } catch { throw ValidationError(error.description) }
    }
}

extension BootRestart: ExpressibleByArgument {}
extension ViewsMode: ExpressibleByArgument {}
