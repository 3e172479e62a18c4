/// The text tables of `jaild list`, `sessions` and `base list`: the first line is the header,
/// columns are padded to their widest cell and two spaces apart, and the last column is not
/// padded (no trailing spaces). Every cell goes through Logfmt.printable here, whoever made
/// it: a session's command, a user name from the jail's passwd, a path: a cell never moves
/// the terminal's cursor, never splits a row, never reverses the text after it.
enum TextTable {
    static func render(_ rawLines: [[String]]) -> String {
        // Each line's cells made printable and measured, then padded, on as many threads as
        // there are CPUs (Parallel; a table of a few lines stays on this one): `jaild list`
        // renders 2,000 rows of 14 cells.
        let lines = Parallel.map(rawLines.count) { index in rawLines[index].map(printable) }
        guard let header = lines.first else { return "" }
        let cellWidths = Parallel.map(lines.count) { index in lines[index].map(width) }
        var widths = [Int](repeating: 0, count: header.count)
        for line in cellWidths {
            for column in widths.indices { widths[column] = max(widths[column], line[column]) }
        }
        return Parallel.map(lines.count) { row in
            let line = lines[row]
            var out = ""
            out.reserveCapacity(widths.reduce(0, +) + 2 * widths.count + 1)
            for (column, cell) in line.enumerated() {
                out += cell
                guard column < line.count - 1 else { break }
                pad(&out, widths[column] - cellWidths[row][column] + 2)
            }
            out += "\n"
            return out
        }.joined()
    }

    private static let spaces = String(repeating: " ", count: 64)

    static func pad(_ out: inout String, _ count: Int) {
        var left = count
        while left > 0 {
            let n = min(left, 64)
            out += Substring(spaces.utf8.prefix(n))
            left -= n
        }
    }

    /// Logfmt.printable, whose answer printable ASCII (nearly every cell) is without a look
    /// at each Unicode scalar.
    static func printable(_ cell: String) -> String {
        isPrintableASCII(cell) ? cell : Logfmt.printable(cell)
    }

    /// The columns a printable cell takes: its Characters, which are its bytes in ASCII.
    static func width(_ cell: String) -> Int {
        isPrintableASCII(cell) ? cell.utf8.count : cell.count
    }

    static func isPrintableASCII(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    }
}
