#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Output helpers written against write(2): the stdio globals are not
// concurrency-safe in Swift 6, and Foundation is not needed for this.

func writeStdout(_ s: String) { writeFD(1, s) }

func printError(_ s: String) { writeFD(2, s + "\n") }

private func writeFD(_ fd: Int32, _ s: String) {
    var s = s
    s.withUTF8 { buf in
        var done = 0
        while done < buf.count {
            let n = write(fd, buf.baseAddress! + done, buf.count - done)
            if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { return }
        }
    }
}

/// `x` with exactly `decimals` digits after the point (no Foundation formatter).
func fixed(_ x: Double, _ decimals: Int) -> String {
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

func pad(_ s: String, _ width: Int, right: Bool = true) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return right ? fill + s : s + fill
}

/// A JSON string literal.
func jsonString(_ s: String) -> String {
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
