import JailProtocol
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// The X11 cookie `jail` offers its session: under `ssh -X`, sshd sets DISPLAY and writes the
/// display's cookie into the host account's Xauthority ($XAUTHORITY, else ~/.Xauthority),
/// which the jail cannot see. The client reads it (its own file, as the user) and sends it in
/// the hello; a jail with --forward-x11 writes it into the session's own Xauthority inside.
enum X11Offer {
    static func cookie(environment: [String: String]) -> X11Cookie? {
        guard let display = environment["DISPLAY"], !display.isEmpty,
              display.utf8.count <= Limits.standard.maxX11FieldBytes else { return nil }
        let probe = X11Cookie(display: display, protocolName: "", data: [])
        guard let number = probe.displayNumber else { return nil }
        let path: String
        if let file = environment["XAUTHORITY"], !file.isEmpty {
            path = file
        } else if let home = environment["HOME"], home.hasPrefix("/") {
            path = home + "/.Xauthority"
        } else {
            return nil
        }
        guard let bytes = try? readFile(path, limit: 1 << 20) else { return nil }
        guard let entry = Xauthority.cookie(in: Xauthority.parse(bytes), number: number, hostname: hostname()),
              entry.name.utf8.count <= Limits.standard.maxX11FieldBytes,
              entry.data.count <= Limits.standard.maxX11FieldBytes else { return nil }
        return X11Cookie(display: display, protocolName: entry.name, data: entry.data)
    }

    static func hostname() -> [UInt8] {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return [] }
        return name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    }
}
