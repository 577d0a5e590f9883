import TraceFormat

/// A minimal SVG document builder: shapes and text appended in order.
/// Coordinates print with at most one decimal, so output is deterministic.
struct SVG {
    let width: Int
    let height: Int
    private var body: [String] = []

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    static func n(_ v: Double) -> String {
        let s = fixed(v, 1)
        return s.hasSuffix(".0") ? String(s.dropLast(2)) : s
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default:
                // XML 1.0 has no control characters but tab, LF and CR, even escaped.
                if c.unicodeScalars.contains(where: { !isXMLCharacter($0) }) { out += "\u{FFFD}" } else { out.append(c) }
            }
        }
        return out
    }

    mutating func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, fill: String, stroke: String? = nil,
                       title: String? = nil) {
        var s = "<rect x=\"\(Self.n(x))\" y=\"\(Self.n(y))\" width=\"\(Self.n(w))\" height=\"\(Self.n(h))\" fill=\"\(fill)\""
        if let stroke { s += " stroke=\"\(stroke)\"" }
        if let title { s += "><title>\(Self.escape(title))</title></rect>" } else { s += "/>" }
        body.append(s)
    }

    mutating func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String = "#000",
                       width: Double = 1, dash: String? = nil) {
        var s = "<line x1=\"\(Self.n(x1))\" y1=\"\(Self.n(y1))\" x2=\"\(Self.n(x2))\" y2=\"\(Self.n(y2))\" "
            + "stroke=\"\(stroke)\" stroke-width=\"\(Self.n(width))\""
        if let dash { s += " stroke-dasharray=\"\(dash)\"" }
        body.append(s + "/>")
    }

    mutating func polygon(_ points: [(Double, Double)], fill: String, title: String? = nil) {
        let p = points.map { "\(Self.n($0.0)),\(Self.n($0.1))" }.joined(separator: " ")
        var s = "<polygon points=\"\(p)\" fill=\"\(fill)\" stroke=\"none\""
        if let title { s += "><title>\(Self.escape(title))</title></polygon>" } else { s += "/>" }
        body.append(s)
    }

    enum Anchor: String { case start, middle, end }

    mutating func text(_ x: Double, _ y: Double, _ text: String, size: Double = 12, anchor: Anchor = .start,
                       bold: Bool = false, rotate: Double? = nil, fill: String = "#222") {
        var s = "<text x=\"\(Self.n(x))\" y=\"\(Self.n(y))\" font-size=\"\(Self.n(size))\" text-anchor=\"\(anchor.rawValue)\" fill=\"\(fill)\""
        if bold { s += " font-weight=\"bold\"" }
        if let rotate { s += " transform=\"rotate(\(Self.n(rotate)) \(Self.n(x)) \(Self.n(y)))\"" }
        body.append(s + ">\(Self.escape(text))</text>")
    }

    var document: String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            + "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" "
            + "viewBox=\"0 0 \(width) \(height)\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
            + "<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"\(height)\" fill=\"#fff\"/>\n"
            + body.joined(separator: "\n") + "\n</svg>\n"
    }
}

/// Tick values from 0 to at least `max` in about `count` round steps (1, 2, 5 × 10^k).
func niceTicks(max: Double, count: Int = 5) -> [Double] {
    guard max > 0, max.isFinite else { return [0] }
    let raw = max / Double(count)
    var p = 1.0
    while p * 10 <= raw { p *= 10 }
    while p > raw { p /= 10 }
    let step = [1.0, 2, 5, 10].map { $0 * p }.first { $0 >= raw } ?? 10 * p
    let top = (max / step).rounded(.up) * step
    return stride(from: 0.0, through: top + step * 1e-9, by: step).map { $0 }
}

/// A character XML 1.0 allows (its Char production).
func isXMLCharacter(_ u: Unicode.Scalar) -> Bool {
    switch u.value {
    case 0x9, 0xa, 0xd, 0x20...0xd7ff, 0xe000...0xfffd, 0x1_0000...0x10_ffff: true
    default: false
    }
}
