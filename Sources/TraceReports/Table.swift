import TraceFormat

/// A plain-text table: columns padded to their widest cell, separated by two
/// spaces; the first `leftColumns` columns are left-aligned, the rest (numbers)
/// right-aligned. Trailing spaces are trimmed.
struct Table {
    var rows: [[String]]
    var leftColumns: Int
    /// Left-align the last column too (a free-text column after numbers).
    var leftLast: Bool

    init(header: [String], leftColumns: Int, leftLast: Bool = false) {
        rows = [header]
        self.leftColumns = leftColumns
        self.leftLast = leftLast
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    var text: String {
        let n = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: n)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        var out = ""
        for row in rows {
            let cells = row.enumerated().map { i, cell in pad(cell, widths[i], right: i >= leftColumns && !(leftLast && i == n - 1)) }
            var line = cells.joined(separator: "  ")
            while line.last == " " { line.removeLast() }
            out += line + "\n"
        }
        return out
    }
}

/// JSON list helper: `[` items `]` with one item per line at two-space
/// indent, or `[]` when empty.
func jsonList(_ items: [String], _ open: String = "[", _ close: String = "]", indent: String = "  ") -> String {
    items.isEmpty ? open + close
        : open + "\n" + items.map { indent + "  " + $0 }.joined(separator: ",\n") + "\n" + indent + close
}
