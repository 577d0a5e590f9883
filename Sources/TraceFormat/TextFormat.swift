// Deterministic text formatting shared by the reports and exporters: fixed
// decimals without Foundation, padding, JSON string literals.

/// `x` with exactly `decimals` digits after the point (no Foundation formatter).
public func fixed(_ x: Double, _ decimals: Int) -> String {
    guard x.isFinite else { return x.isNaN ? "nan" : (x < 0 ? "-inf" : "inf") }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(x) * scale).rounded()
    guard scaled < 9.0e18 else { return "\(x)" }
    let n = UInt64(scaled)
    let p = UInt64(scale)
    var s = (x < 0 && n != 0 ? "-" : "") + String(n / p)
    if decimals > 0 {
        let frac = String(n % p)
        s += "." + String(repeating: "0", count: decimals - frac.count) + frac
    }
    return s
}

public func pad(_ s: String, _ width: Int, right: Bool = true) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return right ? fill + s : s + fill
}

/// A JSON string literal.
public func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// `v` as "0x" and lower-case hex digits.
public func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

/// A duration in ns as "12.3 µs", "4.567 ms" or "1.234 s".
public func durationText(_ ns: UInt64) -> String { durationText(Double(ns)) }

/// The same for a duration that may pass 2^64 ns.
public func durationText(_ ns: Double) -> String {
    if ns >= 1e9 { return fixed(ns / 1e9, 3) + " s" }
    if ns >= 1e6 { return fixed(ns / 1e6, 3) + " ms" }
    return fixed(ns / 1e3, 1) + " µs"
}

/// `s` with every control character (C0, DEL, C1) but tab shown as U+FFFD:
/// text from a file must not drive the reader's terminal.
public func printable(_ s: String) -> String {
    var out = ""
    out.unicodeScalars.reserveCapacity(s.unicodeScalars.count)
    for u in s.unicodeScalars {
        let control = (u.value < 0x20 && u != "\t") || (0x7f...0x9f).contains(u.value)
        out.unicodeScalars.append(control ? "\u{FFFD}" : u)
    }
    return out
}

/// A duration in a table cell: "60 ns" below 1 µs, "12.3 µs", "4.567 ms", "1.234 s".
public func durationCell(_ ns: Double) -> String {
    let v = abs(ns)
    if v < 999.5 { return fixed(ns, 0) + " ns" }
    if v < 999_950 { return fixed(ns / 1e3, 1) + " µs" }
    if v < 999_999_500 { return fixed(ns / 1e6, 3) + " ms" }
    return fixed(ns / 1e9, 3) + " s"
}

public func durationCell(_ ns: UInt64) -> String { durationCell(Double(ns)) }
