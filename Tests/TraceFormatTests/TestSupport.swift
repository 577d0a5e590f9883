import Foundation
import XCTest
@testable import TraceFormat

/// A fresh temporary directory per test, removed afterwards.
class TraceTestCase: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("terrapin-trace-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    @discardableResult
    func writeTrace(_ name: String, _ records: [TraceRecord], metadata: TraceMetadata = sampleMetadata,
                    batch: Int = 4096) throws -> String {
        let p = path(name)
        let w = try TraceWriter(path: p, metadata: metadata, batchRecords: batch)
        for r in records { w.append(r) }
        try w.finish()
        return p
    }

    func bytes(_ p: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: p))) }

    func store(_ b: [UInt8], _ name: String) throws -> String {
        let p = path(name)
        try Data(b).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// Asserts that opening `p` fails with a TraceError at `offset` whose message contains `text`.
    func assertReadError(_ p: String, offset: UInt64?, _ text: String,
                         file: StaticString = #filePath, line: UInt = #line) {
        do {
            let r = try TraceReader(path: p)
            XCTFail("expected an error, read \(r.recordCount) records", file: file, line: line)
        } catch {
            XCTAssertEqual(error.offset, offset, "\(error)", file: file, line: line)
            XCTAssertTrue(error.message.contains(text), "\(error)", file: file, line: line)
            XCTAssertEqual(error.path, p, file: file, line: line)
            XCTAssertTrue(error.description.hasPrefix(p + ": "), error.description, file: file, line: line)
        }
    }
}

let sampleMetadata = TraceMetadata(
    [("command", "terrapin run --image guest.elf"), ("image", "guest.elf"), ("vcpus", "2"),
     ("clock", "CLOCK_MONOTONIC"), ("memory", "256M")],
    startTimeNanos: 1_700_000_000_123_456_789)

/// Deterministic records exercising every field, including extremes.
func sampleRecords(_ n: Int) -> [TraceRecord] {
    var rng = SeededRandom(seed: 42)
    return (0..<n).map { i in
        switch i % 4 {
        case 0:
            return TraceRecord(timestamp: UInt64(i) * 1000, duration: UInt32(i % 5000), level: 1, kind: .ioOut,
                               vcpu: UInt16(i % 3), rip: 0xFFFF_FFFF_8100_0000 &+ UInt64(i), address: 0x3F8,
                               value: UInt64(i & 0xFF), size: 1, flags: i % 8 == 0 ? [.unclaimed] : [])
        case 1:
            return TraceRecord(timestamp: UInt64(i) * 1000, duration: .max, level: 2, kind: .mmioRead,
                               vcpu: .max, rip: .max, address: .max, value: .max, episode: .max,
                               vmxReason: 48, handler: .reflected, size: 8, flags: [.unclaimed, .string, .faulted])
        case 2:
            return TraceRecord(timestamp: UInt64(i) * 1000, duration: 0, level: 0, kind: ExitKind(rawValue: 0),
                               vcpu: 0, rip: 0, address: 0, value: 0, episode: 0, vmxReason: 0,
                               handler: Handler(rawValue: 0), size: 0, flags: [])
        default:
            return TraceRecord(timestamp: rng.next(), duration: UInt32(truncatingIfNeeded: rng.next()),
                               level: UInt8(truncatingIfNeeded: rng.next()), kind: ExitKind(rawValue: UInt8(truncatingIfNeeded: rng.next())),
                               vcpu: UInt16(truncatingIfNeeded: rng.next()), rip: rng.next(), address: rng.next(),
                               value: rng.next(), episode: rng.next(), vmxReason: UInt32(truncatingIfNeeded: rng.next()),
                               handler: Handler(rawValue: UInt8(truncatingIfNeeded: rng.next())),
                               size: UInt8(truncatingIfNeeded: rng.next()),
                               flags: RecordFlags(rawValue: UInt8(truncatingIfNeeded: rng.next())))
        }
    }
}

func put<T: FixedWidthInteger>(_ v: T, into b: inout [UInt8], at offset: Int) {
    withUnsafeBytes(of: v.littleEndian) { for (i, x) in $0.enumerated() { b[offset + i] = x } }
}
