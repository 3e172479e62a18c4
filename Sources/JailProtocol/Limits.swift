/// Bounds on what a peer may send, so a bad or hostile client costs one helper and nothing
/// else. Checked while decoding, before anything is allocated for the claimed size.
public struct Limits: Sendable {
    public var maxFrameBytes: Int = 1 << 20
    public var maxDataBytes: Int = 64 << 10
    public var maxArguments: Int = 4096
    public var maxEnvironment: Int = 1024
    public var maxStringBytes: Int = 256 << 10
    public var maxControlCharacters: Int = 64
    public var maxMessageBytes: Int = 4096
    /// Each field of an X11 cookie (DISPLAY, protocol name, secret).
    public var maxX11FieldBytes: Int = 256

    public init() {}
    public static let standard = Limits()
}
