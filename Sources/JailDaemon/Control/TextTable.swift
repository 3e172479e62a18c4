/// The text tables of `jaild list`, `sessions` and `base list`: the first line is the header,
/// columns are padded to their widest cell and two spaces apart, and the last column is not
/// padded (no trailing spaces). Every cell goes through Logfmt.printable here, whoever made
/// it: a session's command, a user name from the jail's passwd, a path: a cell never moves
/// the terminal's cursor, never splits a row, never reverses the text after it.
enum TextTable {
    static func render(_ rawLines: [[String]]) -> String {
        let lines = rawLines.map { $0.map(Logfmt.printable) }
        guard let header = lines.first else { return "" }
        let widths = (0..<header.count).map { column in lines.map { $0[column].count }.max() ?? 0 }
        return lines.map { line in
            line.enumerated().map { column in
                column.offset == line.count - 1 ? column.element
                    : column.element + String(repeating: " ", count: widths[column.offset] - column.element.count)
            }.joined(separator: "  ") + "\n"
        }.joined()
    }
}
