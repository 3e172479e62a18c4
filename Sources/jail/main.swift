import JailClient

#if canImport(Glibc)
import Glibc
#endif

// `jail` is a login shell: its argv belongs to the jail user's shell, so there is no option
// parser here, just the arguments and the environment as they came.
var environment: [String: String] = [:]
var entry = environ
while let pointer = entry.pointee {
    let pair = String(cString: pointer)
    if let equals = pair.firstIndex(of: "=") {
        environment[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
    }
    entry += 1
}
Client.main(argv: CommandLine.arguments, environment: environment)
