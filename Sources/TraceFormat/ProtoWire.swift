#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal protobuf wire-format encoder, enough for Perfetto's trace
/// packets (docs: protobuf "Encoding": varints, field tags of number << 3 |
/// wire type, length-delimited fields). It writes at a raw pointer into a
/// buffer the caller sized; nested messages are written in place with a
/// one-byte length that is widened afterwards when the body needs more.
struct ProtoWire {
    var p: UnsafeMutablePointer<UInt8>

    static let varintType: UInt64 = 0
    static let lengthType: UInt64 = 2

    @inline(__always)
    mutating func varint(_ v: UInt64) {
        var x = v
        while x >= 0x80 {
            p.pointee = UInt8(truncatingIfNeeded: x) | 0x80
            p += 1
            x >>= 7
        }
        p.pointee = UInt8(truncatingIfNeeded: x)
        p += 1
    }

    /// A varint field (uint64, uint32, int32 ≥ 0, bool, enum).
    @inline(__always)
    mutating func uint(_ field: UInt64, _ v: UInt64) {
        varint(field << 3 | ProtoWire.varintType)
        varint(v)
    }

    /// An int32/int64 field: negative values take ten bytes (two's complement), as protobuf specifies.
    @inline(__always)
    mutating func int(_ field: UInt64, _ v: Int64) {
        uint(field, UInt64(bitPattern: v))
    }

    mutating func bytes(_ field: UInt64, _ b: UnsafeRawBufferPointer) {
        varint(field << 3 | ProtoWire.lengthType)
        varint(UInt64(b.count))
        if let base = b.baseAddress {
            p.update(from: base.assumingMemoryBound(to: UInt8.self), count: b.count)
        }
        p += b.count
    }

    mutating func string(_ field: UInt64, _ s: String) {
        var s = s
        s.withUTF8 { bytes(field, UnsafeRawBufferPointer($0)) }
    }

    /// A length-delimited field whose body `body` writes.
    @inline(__always)
    mutating func message(_ field: UInt64, _ body: (inout ProtoWire) -> Void) {
        varint(field << 3 | ProtoWire.lengthType)
        let lengthAt = p
        p += 1
        let start = p
        body(&self)
        let n = p - start
        if n < 0x80 {
            lengthAt.pointee = UInt8(n)
            return
        }
        // Widen the length: move the body up by the extra length bytes.
        var width = 1, x = n >> 7
        while x > 0 { width += 1; x >>= 7 }
        memmove(start + width - 1, start, n)
        var q = ProtoWire(p: lengthAt)
        q.varint(UInt64(n))
        p = start + width - 1 + n
    }

    /// Raw bytes inside a message body being written (no tag).
    @inline(__always)
    mutating func raw(_ b: [UInt8]) {
        b.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: $0.count) }
        p += b.count
    }

    /// `v` in decimal, as text inside a message body (no tag).
    @inline(__always)
    mutating func decimalText(_ v: UInt64) {
        let n = decimalDigits(v)
        var x = v
        for i in stride(from: n - 1, through: 0, by: -1) {
            p[i] = UInt8(truncatingIfNeeded: x % 10) &+ 48
            x /= 10
        }
        p += n
    }
}
