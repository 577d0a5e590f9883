import Foundation
import XCTest
@testable import TraceFormat

final class WriterReaderTests: TraceTestCase {
    func testRoundTripRecordsAndMetadata() throws {
        let records = sampleRecords(1000)
        let p = try writeTrace("rt.trc", records, batch: 64)
        let r = try TraceReader(path: p)
        XCTAssertEqual(r.version, 1)
        XCTAssertTrue(r.finished)
        XCTAssertEqual(r.recordCount, 1000)
        XCTAssertEqual(r.trailingBytes, 0)
        XCTAssertEqual(r.metadata, sampleMetadata)
        XCTAssertEqual(r.metadata["image"], "guest.elf")
        XCTAssertEqual(Array(r), records)
        var seen: [TraceRecord] = []
        r.forEach { seen.append($0) }
        XCTAssertEqual(seen, records)
        XCTAssertEqual(r[999], records[999])
    }

    func testHeaderLayout() throws {
        let p = try writeTrace("h.trc", sampleRecords(3))
        let b = try bytes(p)
        let text = sampleMetadata.encodedText()
        let headerSize = (40 + text.count + 63) / 64 * 64
        XCTAssertEqual(Array(b[0..<8]), Array("TRPNTRAC".utf8))
        XCTAssertEqual(b[8], 1); XCTAssertEqual(b[9], 0)
        XCTAssertEqual(b[10], 64); XCTAssertEqual(b[11], 0)
        XCTAssertEqual(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self) }, UInt32(headerSize))
        XCTAssertEqual(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self) }, 3)
        XCTAssertEqual(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 24, as: UInt64.self) },
                       sampleMetadata.startTimeNanos)
        XCTAssertEqual(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 32, as: UInt32.self) }, UInt32(text.count))
        XCTAssertEqual(Array(b[36..<40]), [0, 0, 0, 0])
        XCTAssertEqual(Array(b[40..<(40 + text.count)]), text)
        XCTAssertTrue(b[(40 + text.count)..<headerSize].allSatisfy { $0 == 0 })
        XCTAssertEqual(b.count, headerSize + 3 * 64)
    }

    func testEmptyMetadataStillGivesA64ByteHeader() throws {
        let p = try writeTrace("e.trc", [], metadata: TraceMetadata())
        XCTAssertEqual(try bytes(p).count, 64)
        let r = try TraceReader(path: p)
        XCTAssertEqual(r.metadata, TraceMetadata())
        XCTAssertEqual(r.recordCount, 0)
        XCTAssertTrue(r.finished)
    }

    func testBatchBoundaries() throws {
        let batch = 16
        for n in [0, 1, batch - 1, batch, batch + 1, 3 * batch] {
            let records = sampleRecords(n)
            let p = try writeTrace("b\(n).trc", records, batch: batch)
            let r = try TraceReader(path: p)
            XCTAssertEqual(r.recordCount, n, "n=\(n)")
            XCTAssertTrue(r.finished)
            XCTAssertEqual(Array(r), records, "n=\(n)")
        }
    }

    func testBatchWritesHappenOnlyWhenFull() throws {
        let p = path("partial.trc")
        let w = try TraceWriter(path: p, metadata: TraceMetadata(), batchRecords: 4)
        let records = sampleRecords(5)
        for r in records.prefix(3) { w.append(r) }
        XCTAssertEqual(try bytes(p).count, 64, "nothing written before the batch fills")
        w.append(records[3])
        XCTAssertEqual(try bytes(p).count, 64 + 4 * 64, "one write of the full batch")
        w.append(records[4])
        XCTAssertEqual(w.recordsWritten, 5)
        try w.finish()
        try w.finish()   // second call is a no-op
        XCTAssertEqual(try TraceReader(path: p).recordCount, 5)
    }

    func testKilledRunWriterDroppedWithoutFinish() throws {
        let p = path("killed.trc")
        let records = sampleRecords(21)
        do {
            let w = try TraceWriter(path: p, metadata: sampleMetadata, batchRecords: 8)
            for r in records { w.append(r) }
            XCTAssertEqual(w.recordsWritten, 21)
        }   // deinit flushes but leaves the count unfinished
        let b = try bytes(p)
        XCTAssertEqual(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self) }, .max)
        let r = try TraceReader(path: p)
        XCTAssertFalse(r.finished)
        XCTAssertEqual(r.recordCount, 21)
        XCTAssertEqual(Array(r), records)
        XCTAssertEqual(r.metadata, sampleMetadata)
    }

    func testKilledRunWithTrailingPartialRecord() throws {
        let p = path("torn.trc")
        let records = sampleRecords(10)
        do {
            let w = try TraceWriter(path: p, metadata: sampleMetadata, batchRecords: 4)
            for r in records { w.append(r) }
        }
        var b = try bytes(p)
        b.removeLast(64 + 27)   // as if killed mid-write of the last record
        let torn = try store(b, "torn2.trc")
        let r = try TraceReader(path: torn)
        XCTAssertFalse(r.finished)
        XCTAssertEqual(r.recordCount, 8)
        XCTAssertEqual(r.trailingBytes, 64 - 27)
        XCTAssertEqual(Array(r), Array(records.prefix(8)))
    }

    func testWriterReportsUncreatableFile() {
        let p = path("no/such/dir/x.trc")
        XCTAssertThrowsError(try TraceWriter(path: p, metadata: TraceMetadata())) { error in
            let e = error as? TraceError
            XCTAssertEqual(e?.errno, ENOENT)
            XCTAssertEqual(e?.path, p)
            XCTAssertTrue(e?.description.contains("cannot create") ?? false)
        }
    }

    func testHeaderWriteFailureIsReported() throws {
        // /dev/full accepts open but fails every write with ENOSPC.
        guard FileManager.default.isWritableFile(atPath: "/dev/full") else { throw XCTSkip("no /dev/full") }
        XCTAssertThrowsError(try TraceWriter(path: "/dev/full", metadata: TraceMetadata())) { error in
            XCTAssertEqual((error as? TraceError)?.errno, ENOSPC)
        }
    }

    func testBatchWriteFailureIsSurfacedByFinish() throws {
        let p = path("fail.trc")
        let w = try TraceWriter(path: p, metadata: TraceMetadata(), batchRecords: 2)
        close(w.fd)   // make the next write(2) fail with EBADF
        for r in sampleRecords(5) { w.append(r) }
        XCTAssertEqual(w.recordsWritten, 2, "appends stop counting after the failed batch")
        XCTAssertThrowsError(try w.finish()) { error in
            let e = error as? TraceError
            XCTAssertEqual(e?.errno, EBADF)
            XCTAssertEqual(e?.offset, 64)
        }
        // The file still reads as a killed run with the header only.
        let r = try TraceReader(path: p)
        XCTAssertFalse(r.finished)
        XCTAssertEqual(r.recordCount, 0)
    }

    func testMetadataWithNewlinesRoundTrips() throws {
        var m = TraceMetadata(startTimeNanos: 1)
        m["command"] = "terrapin run\n--image x"
        m["kernel"] = "6.8.0 #1 SMP ünïcode"
        m["empty"] = ""
        m["eq"] = "a=b=c"
        let p = try writeTrace("m.trc", [], metadata: m)
        let r = try TraceReader(path: p)
        XCTAssertEqual(r.metadata["command"], "terrapin run --image x")
        XCTAssertEqual(r.metadata["kernel"], "6.8.0 #1 SMP ünïcode")
        XCTAssertEqual(r.metadata["empty"], "")
        XCTAssertEqual(r.metadata["eq"], "a=b=c")
        XCTAssertEqual(r.metadata.keys, ["command", "kernel", "empty", "eq"])
    }
}
