import Foundation
import XCTest
@testable import TraceFormat

/// Deterministic mutations of a valid file: the reader must either throw a
/// TraceError or yield records, and summarising must not crash.
final class FuzzTests: TraceTestCase {
    func testSeededMutationsNeverCrash() throws {
        let valid = try bytes(try writeTrace("seed.trc", sampleRecords(40)))
        var rng = SeededRandom(seed: 0x7E44A9)
        var opened = 0, rejected = 0, recordsSeen = 0
        let p = path("fuzz.trc")
        for round in 0..<3000 {
            var b = valid
            for _ in 0..<(1 + rng.below(4)) {
                switch rng.below(6) {
                case 0, 1:   // flip a byte, biased towards the header
                    let limit = rng.below(2) == 0 ? min(b.count, 160) : b.count
                    if limit > 0 { b[rng.below(limit)] ^= UInt8(truncatingIfNeeded: rng.next() | 1) }
                case 2:   // overwrite a header field with an extreme value
                    let at = [8, 10, 12, 16, 24, 32][rng.below(6)]
                    if b.count >= at + 8 { put(rng.below(2) == 0 ? UInt64.max : rng.next() & 0xFFFF, into: &b, at: at) }
                case 3:   // truncate
                    b.removeLast(rng.below(b.count + 1))
                case 4:   // extend with junk
                    b += (0..<rng.below(200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                default:  // duplicate a slice
                    if !b.isEmpty {
                        let s = rng.below(b.count)
                        b += b[s..<min(b.count, s + rng.below(100))]
                    }
                }
            }
            try Data(b).write(to: URL(fileURLWithPath: p))
            do {
                let r = try TraceReader(path: p)
                opened += 1
                XCTAssertLessThanOrEqual(r.headerSize + r.recordCount * 64, b.count, "round \(round)")
                r.forEach { _ in recordsSeen += 1 }
                let s = TraceSummary(r)
                XCTAssertEqual(s.recordCount, UInt64(r.recordCount), "round \(round)")
                XCTAssertEqual(s.groups.reduce(0) { $0 + $1.count }, s.recordCount, "round \(round)")
                _ = s.groups.map { ($0.p50, $0.p99, $0.meanDuration) }
                // The analyses behind storms, compare, plot and export must cope too.
                let a = EpisodeAnalysis(r, window: 1 + UInt64(rng.below(1_000_000)), topSequences: 3)
                XCTAssertLessThanOrEqual(a.exitsInEpisodes, a.totalExits, "round \(round)")
                _ = a.worst(3).map { EpisodeAnalysis.steps(of: $0, in: r) }
                _ = TraceComparison(s, s, unitsA: 2, unitsB: 3).flagged
                let t = Timeline(r, bins: 1 + rng.below(50))
                XCTAssertEqual(t.series.reduce(0) { $0 + $1.total }, t.latency.reduce(0) { $0 + $1.buckets.reduce(0, +) })
                if round % 10 == 0 {
                    let out = try TextOutput(path: path("export.out"))
                    PerfettoExport.write(r, to: out)
                    RecordExport.writeCSV(r, to: out)
                    try out.finish()
                }
            } catch {
                rejected += 1
                XCTAssertEqual(error.path, p)
                XCTAssertFalse(error.message.isEmpty)
            }
        }
        // Both outcomes must actually occur, or the fuzzer is not exercising anything.
        XCTAssertGreaterThan(opened, 50)
        XCTAssertGreaterThan(rejected, 50)
        XCTAssertGreaterThan(recordsSeen, 0)
    }
}
