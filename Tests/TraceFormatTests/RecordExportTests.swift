import Foundation
import XCTest
@testable import TraceFormat

/// The fast CSV and JSON Lines exports (`RecordFormatter`) against the
/// reference spelling of one record (`RecordExport.csvRow`, `jsonLine`),
/// and their `--numeric` variants against the records.
final class RecordExportTests: TraceTestCase {
    /// Records with every field at its extremes and random values, unknown
    /// kinds, handlers, flag bits and VMX reasons included.
    private func hostileRecords() -> [TraceRecord] {
        var records = sampleRecords(4000)
        var rng = SeededRandom(seed: 7)
        for code: UInt32 in [0, 9, 10, 99, 100, 127, 128, 1000, 0xFFFF, 0x1_0000, 0xFFFF_FFFE] {
            records.append(TraceRecord(timestamp: rng.next(), duration: 1, level: 2, kind: .ioIn, vmxReason: code))
        }
        for v: UInt64 in [1, 9, 10, 11, 99, 100, 101, 999, 1000, 0xF, 0x10, 0xFFFF_FFFF, 1 << 32, 9_999_999_999_999_999_999,
                          10_000_000_000_000_000_000, .max - 1, .max] {
            records.append(TraceRecord(timestamp: v, duration: UInt32(truncatingIfNeeded: v), kind: .wrmsr, rip: v,
                                       address: v, value: v, episode: v))
        }
        return records
    }

    private func export(_ records: [TraceRecord], _ write: (TraceReader, TextOutput) -> Void) throws -> String {
        let reader = try TraceReader(path: try writeTrace("in.trc", records))
        let out = try TextOutput(path: path("out.txt"))
        write(reader, out)
        try out.finish()
        return try String(contentsOfFile: path("out.txt"), encoding: .utf8)
    }

    func testCSVIsTheReferenceRowForEveryRecord() throws {
        let records = hostileRecords()
        let text = try export(records) { RecordExport.writeCSV($0, to: $1) }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.count, records.count + 2)   // header, rows, the empty piece after the last newline
        XCTAssertEqual(String(lines[0]), RecordExport.csvHeader)
        for (i, r) in records.enumerated() {
            XCTAssertEqual(String(lines[i + 1]), RecordExport.csvRow(r, index: i), "record \(i)")
        }
        XCTAssertEqual(lines.last, "")
    }

    func testJSONLinesAreTheReferenceLineForEveryRecord() throws {
        let records = hostileRecords()
        let text = try export(records) { RecordExport.writeJSONLines($0, to: $1) }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.count, records.count + 1)
        for (i, r) in records.enumerated() {
            XCTAssertEqual(String(lines[i]), RecordExport.jsonLine(r, index: i), "record \(i)")
        }
    }

    func testOutputLargerThanTheBufferIsComplete() throws {
        // About 56 bytes a row: 60,000 rows pass the 1 MiB buffer three times.
        let records = (0..<60_000).map { TraceRecord(timestamp: UInt64($0), duration: 5, kind: .ioOut, address: 0x3f8) }
        let text = try export(records) { RecordExport.writeCSV($0, to: $1) }
        XCTAssertGreaterThan(text.utf8.count, 3 << 20)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, records.count + 1)
        XCTAssertEqual(String(lines[59_999 + 1]), RecordExport.csvRow(records[59_999], index: 59_999))
    }

    func testNumericCSVHasIntegerColumns() throws {
        let records = hostileRecords()
        let text = try export(records) { RecordExport.writeCSV($0, to: $1, numeric: true) }
        let lines = text.split(separator: "\n")
        XCTAssertEqual(String(lines[0]), RecordExport.csvHeader)
        for (i, r) in records.enumerated() {
            let c = lines[i + 1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            XCTAssertEqual(c.count, 16, "record \(i)")
            XCTAssertEqual(c[1], String(r.timestamp))
            XCTAssertEqual(c[7], r.vmxReason == TraceRecord.noVMXReason ? "-1" : String(r.vmxReason), "record \(i)")
            XCTAssertEqual(c[8], ExitReason(r).name)
            XCTAssertEqual(UInt64(c[11]), r.rip, "record \(i)")
            XCTAssertEqual(UInt64(c[12]), r.address, "record \(i)")
            XCTAssertEqual(UInt64(c[13]), r.value, "record \(i)")
            XCTAssertEqual(UInt8(c[15]), r.flags.rawValue, "record \(i)")
        }
    }

    func testNumericJSONLinesParseToTheRecordFields() throws {
        let records = hostileRecords()
        let text = try export(records) { RecordExport.writeJSONLines($0, to: $1, numeric: true) }
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, records.count)
        for (i, r) in records.enumerated() {
            let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[i].utf8)) as? [String: Any], "record \(i)")
            // JSONSerialization reads integers above Int64.max as Double: compare those in text.
            XCTAssertTrue(lines[i].contains("\"rip\":\(r.rip),\"address\":\(r.address),\"value\":\(r.value),"), "record \(i)")
            XCTAssertEqual((o["flags"] as? NSNumber)?.intValue, Int(r.flags.rawValue), "record \(i)")
            XCTAssertEqual(o["reason"] as? String, ExitReason(r).name)
            if r.vmxReason == TraceRecord.noVMXReason { XCTAssertTrue(o["vmx_reason"] is NSNull, "record \(i)") }
        }
    }

    func testDecimalAndHexDigits() {
        func format(_ v: UInt64, _ f: (UInt64, inout UnsafeMutablePointer<UInt8>) -> Void) -> String {
            let buf = UnsafeMutablePointer<UInt8>.allocate(capacity: 32)
            defer { buf.deallocate() }
            var p = buf
            f(v, &p)
            return String(decoding: UnsafeBufferPointer(start: buf, count: p - buf), as: UTF8.self)
        }
        let formatter = RecordFormatter(style: .csv, numeric: false)
        var v: UInt64 = 1
        var values: [UInt64] = [0, .max, .max - 1]
        for _ in 0..<20 { values += [v - 1, v, v + 1]; v = v &* 10 }
        for shift in 0..<64 { values += [1 << shift, (1 << shift) - 1] }
        for x in values {
            XCTAssertEqual(format(x) { formatter.decimal($0, &$1) }, String(x))
            XCTAssertEqual(format(x) { TraceFormat.hex($0, &$1) }, "0x" + String(x, radix: 16))
            XCTAssertEqual(decimalDigits(x), String(x).count)
        }
    }
}
