/// The fast path of the CSV and JSON Lines exports (Traces/README.md,
/// "terrapin-trace export"): each record is formatted straight into the
/// output's buffer with hand-written decimal and hex conversion, and every
/// name (kind, reason, handler, flags) comes from a table of bytes built
/// once. The text is byte for byte that of the reference spelling
/// `RecordExport.csvRow` and `jsonLine`, which the tests keep
/// (Tests/TraceFormatTests/RecordExportReference.swift).
final class RecordFormatter {
    enum Style { case csv, json }

    let style: Style
    /// Decimal instead of hex for rip, address and value; the flags byte as a
    /// number; in CSV, -1 for "no VMX reason" (README: `--numeric`).
    let numeric: Bool

    /// Every name as bytes in one arena, found through `spans` (offset << 16
    /// | length) by table: kinds, handlers and flag sets by raw value, then
    /// the reason names of VMX basic exit reasons below `vmxNames`; other
    /// reasons are built per record (only hostile or future traces have
    /// them). Raw memory, so formatting a record retains nothing.
    private let arena: UnsafeMutablePointer<UInt8>
    private let spans: UnsafeMutablePointer<UInt32>
    private static let kindBase = 0, handlerBase = 256, flagBase = 512, vmxBase = 768, vmxNames = 128
    /// "00" to "99", two bytes each.
    private let pairs: UnsafeMutablePointer<UInt8>

    init(style: Style, numeric: Bool) {
        self.style = style
        self.numeric = numeric
        var names: [[UInt8]] = []
        names += (0...255).map { Array(ExitKind(rawValue: UInt8($0)).name.utf8) }
        names += (0...255).map { Array(Handler(rawValue: UInt8($0)).name.utf8) }
        names += (0...255).map { bits in
            let flags = RecordExport.flagNames(RecordFlags(rawValue: UInt8(bits)))
            let text = style == .csv ? flags.joined(separator: "+") : flags.map { "\"\($0)\"" }.joined(separator: ",")
            return Array(text.utf8)
        }
        names += (0..<RecordFormatter.vmxNames).map { Array(ExitReason.vmx(UInt32($0)).name.utf8) }
        let total = names.reduce(0) { $0 + $1.count }
        arena = .allocate(capacity: total)
        spans = .allocate(capacity: names.count)
        var offset = 0
        for (i, name) in names.enumerated() {
            (arena + offset).initialize(from: name, count: name.count)
            spans[i] = UInt32(offset << 16 | name.count)
            offset += name.count
        }
        pairs = .allocate(capacity: 200)
        for i in 0..<100 {
            pairs[2 * i] = UInt8(48 + i / 10)
            pairs[2 * i + 1] = UInt8(48 + i % 10)
        }
    }

    deinit {
        arena.deallocate()
        spans.deallocate()
        pairs.deallocate()
    }

    @inline(__always)
    private func name(_ table: Int, _ i: Int, _ p: inout UnsafeMutablePointer<UInt8>) {
        let span = Int(spans[table &+ i])
        let n = span & 0xFFFF
        p.update(from: arena + (span >> 16), count: n)
        p += n
    }

    /// The longest row: 20-digit integers, names of at most 64 bytes, all
    /// eight flag names. `reserve` asks for this much per record.
    static let maxRow = 1024

    /// Writes record `index` as one line into `out`.
    @inline(__always)
    func write(_ r: TraceRecord, index: Int, to out: TextOutput) {
        let start = out.reserve(RecordFormatter.maxRow)
        var p = start
        switch style {
        case .csv: csv(r, index, &p)
        case .json: json(r, index, &p)
        }
        out.commit(p - start)
    }

    @inline(__always)
    private func csv(_ r: TraceRecord, _ index: Int, _ p: inout UnsafeMutablePointer<UInt8>) {
        let comma: UInt8 = 0x2C
        decimal(UInt64(index), &p); put(comma, &p)
        decimal(r.timestamp, &p); put(comma, &p)
        decimal(UInt64(r.duration), &p); put(comma, &p)
        decimal(UInt64(r.level), &p); put(comma, &p)
        decimal(UInt64(r.vcpu), &p); put(comma, &p)
        name(RecordFormatter.kindBase, Int(r.kind.rawValue), &p); put(comma, &p)
        decimal(UInt64(r.kind.rawValue), &p); put(comma, &p)
        if r.vmxReason != TraceRecord.noVMXReason {
            decimal(UInt64(r.vmxReason), &p)
        } else if numeric {
            put(0x2D, &p); put(0x31, &p)   // -1
        }
        put(comma, &p)
        reason(r, &p); put(comma, &p)
        name(RecordFormatter.handlerBase, Int(r.handler.rawValue), &p); put(comma, &p)
        decimal(r.episode, &p); put(comma, &p)
        number(r.rip, &p); put(comma, &p)
        number(r.address, &p); put(comma, &p)
        number(r.value, &p); put(comma, &p)
        decimal(UInt64(r.size), &p); put(comma, &p)
        if numeric { decimal(UInt64(r.flags.rawValue), &p) } else { name(RecordFormatter.flagBase, Int(r.flags.rawValue), &p) }
        put(0x0A, &p)
    }

    @inline(__always)
    private func json(_ r: TraceRecord, _ index: Int, _ p: inout UnsafeMutablePointer<UInt8>) {
        literal("{\"record\":", &p); decimal(UInt64(index), &p)
        literal(",\"timestamp_ns\":", &p); decimal(r.timestamp, &p)
        literal(",\"duration_ns\":", &p); decimal(UInt64(r.duration), &p)
        literal(",\"level\":", &p); decimal(UInt64(r.level), &p)
        literal(",\"vcpu\":", &p); decimal(UInt64(r.vcpu), &p)
        literal(",\"kind\":\"", &p); name(RecordFormatter.kindBase, Int(r.kind.rawValue), &p)
        literal("\",\"kind_code\":", &p); decimal(UInt64(r.kind.rawValue), &p)
        literal(",\"vmx_reason\":", &p)
        if r.vmxReason == TraceRecord.noVMXReason { literal("null", &p) } else { decimal(UInt64(r.vmxReason), &p) }
        literal(",\"reason\":\"", &p); reason(r, &p)
        literal("\",\"handler\":\"", &p); name(RecordFormatter.handlerBase, Int(r.handler.rawValue), &p)
        literal("\",\"episode\":", &p); decimal(r.episode, &p)
        if numeric {
            literal(",\"rip\":", &p); decimal(r.rip, &p)
            literal(",\"address\":", &p); decimal(r.address, &p)
            literal(",\"value\":", &p); decimal(r.value, &p)
        } else {
            literal(",\"rip\":\"", &p); hex(r.rip, &p)
            literal("\",\"address\":\"", &p); hex(r.address, &p)
            literal("\",\"value\":\"", &p); hex(r.value, &p)
            put(0x22, &p)
        }
        literal(",\"size\":", &p); decimal(UInt64(r.size), &p)
        if numeric {
            literal(",\"flags\":", &p); decimal(UInt64(r.flags.rawValue), &p); put(0x7D, &p)
        } else {
            literal(",\"flags\":[", &p); name(RecordFormatter.flagBase, Int(r.flags.rawValue), &p); put(0x5D, &p); put(0x7D, &p)
        }
        put(0x0A, &p)
    }

    @inline(__always)
    private func reason(_ r: TraceRecord, _ p: inout UnsafeMutablePointer<UInt8>) {
        if r.vmxReason == TraceRecord.noVMXReason {
            name(RecordFormatter.kindBase, Int(r.kind.rawValue), &p)
        } else if r.vmxReason < UInt32(RecordFormatter.vmxNames) {
            name(RecordFormatter.vmxBase, Int(r.vmxReason), &p)
        } else {
            // Unknown codes are "VMX_REASON_N" (at most 21 bytes); known names
            // above 127 do not exist in VMXArch today but would still fit.
            var text = ExitReason(r).name
            text.withUTF8 { b in
                let n = min(b.count, 64)
                p.update(from: b.baseAddress!, count: n)
                p += n
            }
        }
    }

    @inline(__always)
    private func number(_ v: UInt64, _ p: inout UnsafeMutablePointer<UInt8>) {
        if numeric { decimal(v, &p) } else { hex(v, &p) }
    }

    /// `v` in decimal: the digit count first, then the digits from the end,
    /// two at a time.
    @inline(__always)
    func decimal(_ v: UInt64, _ p: inout UnsafeMutablePointer<UInt8>) {
        if v < 10 {
            p.pointee = UInt8(truncatingIfNeeded: v) &+ 48
            p += 1
            return
        }
        let n = decimalDigits(v)
        var q = p + n
        var x = v
        while x >= 100 {
            let i = Int(truncatingIfNeeded: x % 100) &* 2
            x /= 100
            q -= 2
            q[0] = pairs[i]
            q[1] = pairs[i &+ 1]
        }
        if x >= 10 {
            let i = Int(truncatingIfNeeded: x) &* 2
            q -= 2
            q[0] = pairs[i]
            q[1] = pairs[i &+ 1]
        } else {
            q -= 1
            q[0] = UInt8(truncatingIfNeeded: x) &+ 48
        }
        p += n
    }
}

/// Decimal digits of `v` (≥ 1), by comparison rather than division.
@inline(__always)
func decimalDigits(_ v: UInt64) -> Int {
    var n = 1
    var limit: UInt64 = 10
    while n < 20 && v >= limit {
        n &+= 1
        if n == 20 { break }
        limit &*= 10
    }
    return n
}

@inline(__always)
private func put(_ b: UInt8, _ p: inout UnsafeMutablePointer<UInt8>) {
    p.pointee = b
    p += 1
}

/// A string literal's UTF-8 bytes; the compiler keeps them in constant memory.
@inline(__always)
private func literal(_ s: StaticString, _ p: inout UnsafeMutablePointer<UInt8>) {
    p.update(from: s.utf8Start, count: s.utf8CodeUnitCount)
    p += s.utf8CodeUnitCount
}

/// `v` as "0x" and lower-case hex digits, as `hex(_:)` spells it.
@inline(__always)
func hex(_ v: UInt64, _ p: inout UnsafeMutablePointer<UInt8>) {
    p[0] = 0x30
    p[1] = 0x78
    let n = v == 0 ? 1 : (67 - v.leadingZeroBitCount) / 4
    var x = v
    var q = p + 2 + n
    for _ in 0..<n {
        q -= 1
        let d = UInt8(truncatingIfNeeded: x & 0xF)
        q.pointee = d < 10 ? d &+ 48 : d &+ 87
        x >>= 4
    }
    p += 2 + n
}
