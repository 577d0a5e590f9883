import Foundation
import XCTest
@testable import TraceFormat

final class ComparisonExportTests: TraceTestCase {
    func testComparisonNormalisesAndFlags() {
        let a = TraceSummary(records: (0..<100).map { TraceRecord(timestamp: UInt64($0), duration: 10, kind: .ioOut) }
            + [TraceRecord(timestamp: 0, duration: 5, kind: .hlt)])
        let b = TraceSummary(records: (0..<210).map { TraceRecord(timestamp: UInt64($0), duration: 10, kind: .ioOut) }
            + [TraceRecord(timestamp: 0, duration: 5, level: 2, kind: .hlt)])
        let raw = TraceComparison(a, b)
        XCTAssertEqual(raw.rows.map { "L\($0.level) \($0.reason!.name)" }, ["L1 io-out", "L1 hlt", "L2 hlt"])
        XCTAssertEqual(raw.rows[0].countRatio ?? 0, 2.1, accuracy: 1e-12)
        XCTAssertEqual(raw.flagged.count, 3)
        let perUnit = TraceComparison(a, b, unitsA: 10, unitsB: 20, threshold: 0.10)
        XCTAssertEqual(perUnit.rows[0].normCountB, 10.5)
        XCTAssertEqual(perUnit.rows[0].countChange ?? 0, 0.05, accuracy: 1e-12)
        XCTAssertFalse(perUnit.rows[0].exceeds(0.10))
        XCTAssertTrue(perUnit.rows[1].exceeds(0.10), "gone in B")
        XCTAssertEqual(perUnit.levels.map(\.level), [1, 2])
        XCTAssertEqual(perUnit.levels[0].countA, 101)
        var m = TraceMetadata()
        m["iterations"] = "5000"
        m["cmdline"] = "pio-storm.elf 2000 x"
        XCTAssertEqual(TraceComparison.workUnits(m, key: "iterations"), 5000)
        XCTAssertEqual(TraceComparison.workUnits(m, key: "cmdline"), 2000)
        XCTAssertNil(TraceComparison.workUnits(m, key: "image"))
    }

    func testPerfettoTrackPlacementNeverOverlapsPartially() {
        var rng = SeededRandom(seed: 77)
        for _ in 0..<200 {
            var track = PerfettoExport.Track()
            var placed: [(s: UInt64, e: UInt64)] = []
            for _ in 0..<50 {
                let s = UInt64(rng.below(10_000)), d = UInt64(rng.below(3000))
                let (ps, pe) = track.place(s, s + d, parent: rng.below(4) == 0)
                XCTAssertLessThanOrEqual(ps, pe)
                placed.append((ps, pe))
            }
            for i in placed.indices {
                for j in placed.indices where i < j {
                    let a = placed[i], b = placed[j]
                    let disjoint = a.e <= b.s || b.e <= a.s
                    let nested = (a.s <= b.s && b.e <= a.e) || (b.s <= a.s && a.e <= b.e)
                    XCTAssertTrue(disjoint || nested, "\(a) and \(b) overlap partially")
                }
            }
        }
    }

    func testCSVRowAndJSONLine() {
        let r = TraceRecord(timestamp: 12, duration: 3, level: 2, kind: .mmioWrite, vcpu: 1, rip: 0x1000, address: 0xfeb0_0000,
                            value: 0xff, episode: 7, vmxReason: 48, handler: .reflected, size: 4, flags: [.unclaimed, .faulted])
        XCTAssertEqual(RecordExport.csvRow(r, index: 5),
                       "5,12,3,2,1,mmio-write,4,48,EPT_VIOLATION,reflected,7,0x1000,0xfeb00000,0xff,4,unclaimed+faulted")
        let o = try? JSONSerialization.jsonObject(with: Data(RecordExport.jsonLine(r, index: 5).utf8)) as? [String: Any]
        XCTAssertEqual(o?["reason"] as? String, "EPT_VIOLATION")
        XCTAssertEqual(o?["flags"] as? [String], ["unclaimed", "faulted"])
        XCTAssertEqual(RecordExport.flagNames(RecordFlags(rawValue: 0x88)), ["ept02-fault", "bit7"])
    }
}
