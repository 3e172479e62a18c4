import JailProtocol

/// The one place the package's version is written: `jaild --version` prints it, the state and
/// /run/jail/info.json carry it, and scripts/package reads it from this line to name the .deb.
public enum JailVersion {
    public static let package = "0.2.0"

    /// `jaild --version`: the package version, then the versions that decide whether a new
    /// jaild can adopt a running jail and talk to its clients (docs/architecture.md, "Adoption").
    public static func text(program: String) -> String {
        """
        \(program) \(package)
        state format \(JailState.formatVersion)
        adoption channel \(AdoptionAndEntryChannel.version)
        session protocol \(Protocol.version)

        """
    }
}
