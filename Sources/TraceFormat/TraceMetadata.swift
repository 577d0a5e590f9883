#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The header's run description: ordered "key=value" lines plus the run's
/// start time (CLOCK_REALTIME, ns since the Unix epoch).
public struct TraceMetadata: Equatable, Sendable {
    public var entries: [(key: String, value: String)]
    public var startTimeNanos: UInt64

    public init(_ entries: [(key: String, value: String)] = [], startTimeNanos: UInt64 = 0) {
        self.entries = entries
        self.startTimeNanos = startTimeNanos
    }

    /// First value for `key`. Setting replaces the first entry with that key
    /// (or appends); setting nil removes every entry with that key.
    public subscript(key: String) -> String? {
        get { entries.first { $0.key == key }?.value }
        set {
            if let newValue {
                if let i = entries.firstIndex(where: { $0.key == key }) {
                    entries[i].value = newValue
                } else {
                    entries.append((key, newValue))
                }
            } else {
                entries.removeAll { $0.key == key }
            }
        }
    }

    public var keys: [String] { entries.map(\.key) }

    /// Keys that line a trace up with host traces (Traces/README.md, "Lining
    /// up with host traces"): CLOCK_MONOTONIC ns of the records' time zero,
    /// and the Linux thread id of the thread that runs vCPU 0. The writer
    /// stores them as fixed-width placeholders (spaces) and patches them
    /// when the run starts; values are right-aligned numbers.
    public static let monotonicBaseKey = "monotonic_base_ns"
    public static let vcpu0ThreadKey = "vcpu0_tid"
    public static let monotonicBaseWidth = 20, threadWidth = 10

    /// The unit of work the guest reported (`report_iterations` in the
    /// guest library): `compare`'s default normalisation key. `terrapin`
    /// writes it as a placeholder and patches it at the end of the run;
    /// blank when the guest reported nothing (Traces/README.md).
    public static let iterationsKey = "iterations"
    public static let iterationsWidth = 20

    /// `v` right-aligned in `width` characters, as the patched keys store it.
    public static func padded(_ v: UInt64, width: Int) -> String {
        let digits = String(v)
        return String(repeating: " ", count: max(0, width - digits.count)) + digits
    }

    /// The numeric value of `key`: nil when absent or blank (a run killed
    /// before it started), an error message when it is not a number.
    public func number(_ key: String) -> Result<UInt64?, MetadataValueError> {
        guard let raw = self[key] else { return .success(nil) }
        let text = raw.trimmingSpaces
        if text.isEmpty { return .success(nil) }
        guard let v = UInt64(text) else { return .failure(MetadataValueError(key: key, value: raw)) }
        return .success(v)
    }

    public static func == (a: TraceMetadata, b: TraceMetadata) -> Bool {
        a.startTimeNanos == b.startTimeNanos
            && a.entries.count == b.entries.count
            && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    /// The current CLOCK_REALTIME in ns, for `startTimeNanos`.
    public static func realtimeNow() -> UInt64 { clockNanos(CLOCK_REALTIME) }

    /// The metadata text as stored: one "key=value\n" per entry. Newlines in
    /// values become spaces; newlines and '=' in keys become '_', so every
    /// entry reads back as exactly one line that splits at its first '='.
    public func encodedText() -> [UInt8] {
        var out: [UInt8] = []
        for (key, value) in entries {
            for b in key.utf8 { out.append(b == 0x0A || b == 0x3D ? 0x5F : b) }
            out.append(0x3D)
            for b in value.utf8 { out.append(b == 0x0A ? 0x20 : b) }
            out.append(0x0A)
        }
        return out
    }

    /// Parses metadata text starting at file offset `base`. Throws with the
    /// offset of the first bad byte or line.
    static func parse(_ bytes: UnsafeRawBufferPointer, base: UInt64, path: String) throws(TraceError) -> [(key: String, value: String)] {
        // Valid UTF-8 re-encodes identically; the first difference is the first invalid byte.
        let text = String(decoding: bytes, as: UTF8.self)
        if !text.utf8.elementsEqual(bytes) {
            var i = 0
            for b in text.utf8 {
                guard i < bytes.count, bytes[i] == b else { break }
                i += 1
            }
            throw TraceError(path: path, offset: base + UInt64(i), message: "metadata is not valid UTF-8")
        }
        var result: [(key: String, value: String)] = []
        var lineStart = 0
        while lineStart < bytes.count {
            var end = lineStart
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            guard let eq = bytes[lineStart..<end].firstIndex(of: 0x3D) else {
                throw TraceError(path: path, offset: base + UInt64(lineStart),
                                 message: "metadata line has no '=' (expected key=value)")
            }
            let key = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[lineStart..<eq]), as: UTF8.self)
            let value = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(eq + 1)..<end]), as: UTF8.self)
            result.append((key, value))
            lineStart = end + 1
        }
        return result
    }
}

/// Reads a POSIX clock in ns.
public func clockNanos(_ clock: clockid_t) -> UInt64 {
    var ts = timespec()
    clock_gettime(clock, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// A metadata value that should be a number and is not.
public struct MetadataValueError: Error, Equatable, Sendable {
    public var key: String
    public var value: String
}

extension String {
    /// Without leading and trailing spaces.
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
