import Foundation
import XCTest
@testable import TraceFormat

final class RecordTests: XCTestCase {
    func testEncodeDecodeRoundTripAtOddAlignment() {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 64 * 3 + 3, alignment: 16)
        defer { raw.deallocate() }
        for r in sampleRecords(64) {
            memset(raw, 0xAA, 64 * 3 + 3)
            r.encode(to: raw + 3)   // deliberately unaligned
            XCTAssertEqual(TraceRecord(decoding: raw + 3), r)
            // Reserved bytes are zeroed, bytes outside the record untouched.
            XCTAssertEqual(raw.load(fromByteOffset: 3 + 55, as: UInt8.self), 0)
            XCTAssertEqual(raw.loadUnaligned(fromByteOffset: 3 + 56, as: UInt64.self), 0)
            XCTAssertEqual(raw.load(fromByteOffset: 3 + 64, as: UInt8.self), 0xAA)
        }
    }

    func testByteLayoutIsLittleEndianAtSpecifiedOffsets() {
        let r = TraceRecord(timestamp: 0x0102_0304_0506_0708, duration: 0x1112_1314, level: 2, kind: .wrmsr,
                            vcpu: 0x2122, rip: 0x3132_3334_3536_3738, address: 0xC000_0080, value: 0x4142,
                            episode: 0x5152, vmxReason: 32, handler: .reflected, size: 4, flags: [.faulted])
        var b = [UInt8](repeating: 0xFF, count: 64)
        b.withUnsafeMutableBytes { r.encode(to: $0.baseAddress!) }
        XCTAssertEqual(Array(b[0..<8]), [8, 7, 6, 5, 4, 3, 2, 1])
        XCTAssertEqual(Array(b[8..<12]), [0x14, 0x13, 0x12, 0x11])
        XCTAssertEqual(b[12], 2)
        XCTAssertEqual(b[13], 8)
        XCTAssertEqual(Array(b[14..<16]), [0x22, 0x21])
        XCTAssertEqual(b[16], 0x38)
        XCTAssertEqual(Array(b[24..<28]), [0x80, 0, 0, 0xC0])
        XCTAssertEqual(Array(b[32..<34]), [0x42, 0x41])
        XCTAssertEqual(Array(b[40..<42]), [0x52, 0x51])
        XCTAssertEqual(Array(b[48..<52]), [32, 0, 0, 0])
        XCTAssertEqual(b[52], 1)
        XCTAssertEqual(b[53], 4)
        XCTAssertEqual(b[54], 4)
        XCTAssertEqual(Array(b[55..<64]), [UInt8](repeating: 0, count: 9))
    }

    func testDefaultsForNestedFields() {
        let r = TraceRecord(timestamp: 1, duration: 2, kind: .hlt)
        XCTAssertEqual(r.vmxReason, 0xFFFF_FFFF)
        XCTAssertEqual(r.vmxReason, TraceRecord.noVMXReason)
        XCTAssertEqual(r.episode, 0)
        XCTAssertEqual(r.handler, .l0)
        XCTAssertEqual(r.level, 1)
        XCTAssertEqual(TraceRecord.clampDuration(UInt64(UInt32.max) + 5), .max)
        XCTAssertEqual(TraceRecord.clampDuration(77), 77)
    }

    func testExitKindNames() {
        let expected = ["io-in", "io-out", "mmio-read", "mmio-write", "hlt", "shutdown", "rdmsr", "wrmsr",
                        "debug", "internal-error", "interrupted", "irq-window", "fail-entry", "system-event",
                        "interrupt-injected", "unknown-exit", "stopped", "kernel-exit"]
        XCTAssertEqual(ExitKind.allKnown.map(\.name), expected)
        XCTAssertEqual(ExitKind.allKnown.map(\.rawValue), Array(1...18))
        XCTAssertEqual(ExitKind(rawValue: 0).name, "kind-0")
        XCTAssertEqual(ExitKind(rawValue: 200).name, "kind-200")
        XCTAssertEqual(ExitKind.interruptInjected.rawValue, 15)
        XCTAssertEqual(Handler.l0.name, "l0")
        XCTAssertEqual(Handler.reflected.name, "reflected")
        XCTAssertEqual(Handler.kernel.name, "kernel")
        XCTAssertEqual(Handler(rawValue: 9).name, "handler-9")
        XCTAssertEqual(RecordFlags([.unclaimed, .string, .faulted]).rawValue, 7)
    }

    func testMetadataSubscriptAndSanitising() {
        var m = TraceMetadata([("a", "1")], startTimeNanos: 5)
        m["b"] = "two\nlines"
        m["a"] = "one"
        XCTAssertEqual(m["a"], "one")
        XCTAssertEqual(m.keys, ["a", "b"])
        m["x=y\n"] = "v"
        XCTAssertEqual(String(decoding: m.encodedText(), as: UTF8.self), "a=one\nb=two lines\nx_y_=v\n")
        m["a"] = nil
        XCTAssertNil(m["a"])
        XCTAssertEqual(m.keys, ["b", "x=y\n"])
    }
}
