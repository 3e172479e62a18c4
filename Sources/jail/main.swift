import JailClient

#if canImport(Glibc)
import Glibc
#endif

// `jail` is a login shell: its argv belongs to the jail user's shell, so there is no option
// parser here, just the arguments and the environment as they came.
// Both as bytes (what the jail gets, unchanged) and as text (for jail's own lookups).
var environment: [String: String] = [:]
var rawEnvironment: [[UInt8]] = []
var entry = environ
while let pointer = entry.pointee {
    rawEnvironment.append(Array(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer))))
    let pair = String(cString: pointer)
    if let equals = pair.firstIndex(of: "=") {
        environment[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
    }
    entry += 1
}
var argv: [[UInt8]] = []
for index in 0..<Int(CommandLine.argc) {
    guard let pointer = CommandLine.unsafeArgv[index] else { break }
    argv.append(Array(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer))))
}
Client.main(argv: argv, environment: environment, rawEnvironment: rawEnvironment)
