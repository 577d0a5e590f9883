import Foundation
import XCTest
@testable import TraceFormat

final class ComparisonExportTests: TraceTestCase {
    /// `n` exits of `kind`, one per µs, with durations around `median` ns
    /// (uniform in ±20%), from a generator seeded with `seed`.
    private func exits(_ n: Int, kind: ExitKind = .ioOut, median: Double, seed: UInt64, level: UInt8 = 1) -> [TraceRecord] {
        var rng = SeededRandom(seed: seed)
        return (0..<n).map { i in
            let d = median * (0.8 + 0.4 * Double(rng.below(1001)) / 1000)
            return TraceRecord(timestamp: UInt64(i) * 1000, duration: UInt32(d), level: level, kind: kind)
        }
    }

    private func summary(_ records: [TraceRecord], _ name: String, blocks: Int = 20) throws -> TraceSummary {
        TraceSummary(try TraceReader(path: try writeTrace(name, records)), blocks: blocks)
    }

    func testQuantilesInterpolateInsideBuckets() {
        let h = BlockHistograms(blocks: 2, values: [(0, 10), (0, 20), (1, 30)])
        XCTAssertEqual(h.total, 3)
        XCTAssertEqual(h.quantile(0, counts: h.merged), 10)
        XCTAssertEqual(h.quantile(0.5, counts: h.merged), 20, "exact buckets below 32")
        XCTAssertEqual(h.quantile(1, counts: h.merged), 30)
        // One value in a wide bucket: cut to the exact min and max.
        let wide = BlockHistograms(blocks: 1, values: [(0, 1000)])
        XCTAssertEqual(wide.quantile(0.5, counts: wide.merged), 1000)
        // 100 values 1000...1099 (buckets 992-1023, 1024-1087, 1088-1151): p50 lies within a few %.
        let spread = BlockHistograms(blocks: 4, values: (0..<100).map { ($0 % 4, UInt32(1000 + $0)) })
        let p50 = spread.quantile(0.5, counts: spread.merged) ?? 0
        XCTAssertEqual(p50, 1049.5, accuracy: 1049.5 * DurationBuckets.relativeError)
        XCTAssertNil(BlockHistograms(blocks: 3, values: []).quantile(0.5, counts: [UInt64]()))
    }

    func testBootstrapIsReproducibleAndDependsOnItsSeed() {
        var rng = SeededRandom(seed: 9)
        let a = BlockHistograms(blocks: 20, values: (0..<2000).map { ($0 / 100, UInt32(500 + rng.below(500))) })
        let b = BlockHistograms(blocks: 20, values: (0..<2000).map { ($0 / 100, UInt32(520 + rng.below(500))) })
        let one = Bootstrap(resamples: 200, seed: 1).compare([(a, b)], quantiles: [0.5])[0]![0]
        let again = Bootstrap(resamples: 200, seed: 1).compare([(a, b)], quantiles: [0.5])[0]![0]
        let other = Bootstrap(resamples: 200, seed: 2).compare([(a, b)], quantiles: [0.5])[0]![0]
        XCTAssertEqual(one, again)
        XCTAssertNotEqual(one.low, other.low)
        XCTAssertEqual(one.a, other.a, "the point estimate does not depend on the seed")
        XCTAssertLessThan(one.low!, one.delta)
        XCTAssertGreaterThan(one.high!, one.delta)
        // One block: no interval, so nothing can be flagged.
        let single = Bootstrap(blocks: 1).compare([(BlockHistograms(blocks: 1, values: [(0, 5)]),
                                                   BlockHistograms(blocks: 1, values: [(0, 9)]))], quantiles: [0.5])
        XCTAssertNil(single[0]![0].low)
        XCTAssertNil(Bootstrap().compare([(a, nil)], quantiles: [0.5])[0])
    }

    /// The bootstrap over exact per-run values (the paging experiment's):
    /// the median's interval holds the median, the ratio's interval holds
    /// the ratio of medians, and a clear difference keeps 1 outside it.
    func testMedianAndRatioOverPerRunValues() throws {
        let boot = Bootstrap(resamples: 500, seed: 3)
        let a: [Double] = [100, 104, 98, 101, 97, 103]
        let b = a.map { $0 * 3 + 7 }
        let m = try XCTUnwrap(boot.median(of: a))
        XCTAssertEqual(m.median, 100.5)
        XCTAssertTrue(m.low <= m.median && m.median <= m.high && m.low >= 97 && m.high <= 104, "\(m)")
        let r = try XCTUnwrap(boot.medianRatio(a, b))
        XCTAssertEqual(r.median, (100.5 * 3 + 7) / 100.5, accuracy: 1e-9)
        XCTAssertTrue(r.low <= r.median && r.median <= r.high && r.low > 1, "\(r)")
        XCTAssertEqual(boot.medianRatio(a, b), r, "a fixed seed")
        let aa = try XCTUnwrap(boot.medianRatio(a, a.reversed()))
        XCTAssertTrue(aa.low < 1 && aa.high > 1, "A/A: 1 is inside, \(aa)")
        XCTAssertEqual(boot.median(of: [7]), Bootstrap.MedianEstimate(median: 7, low: 7, high: 7))
        XCTAssertNil(boot.median(of: []))
        XCTAssertNil(boot.medianRatio([], b))
        XCTAssertNil(boot.medianRatio([0, 0], b), "no ratio over a zero median")
    }

    func testSameDistributionIsNotFlagged() throws {
        // A/A: two samples of one distribution, and a 5% shift that is below the threshold.
        let a = try summary(exits(4000, median: 1000, seed: 1), "a.trc")
        let same = try summary(exits(4000, median: 1000, seed: 2), "same.trc")
        let small = try summary(exits(4000, median: 1050, seed: 3), "small.trc")
        for b in [same, small] {
            let c = TraceComparison(a, b)
            XCTAssertEqual(c.rows.count, 1)
            XCTAssertEqual(c.flagged.count, 0, "\(c.rows)")
            XCTAssertTrue(c.rows[0].enoughSamples)
        }
        let row = TraceComparison(a, small).rows[0]
        XCTAssertTrue(row.p50!.delta.excludesZero, "a 5% shift is detected...")
        XCTAssertFalse(row.p50!.flagged, "...and not flagged, being below 10%")
        XCTAssertTrue(TraceComparison(a, small, settings: .init(threshold: 0.02)).rows[0].p50!.flagged)
    }

    func testShiftedDistributionIsFlagged() throws {
        let a = try summary(exits(4000, median: 1000, seed: 1), "a.trc")
        let slower = try summary(exits(4000, median: 1500, seed: 2), "b.trc")
        let row = TraceComparison(a, slower).rows[0]
        XCTAssertEqual(row.flags, ["p50", "p99"])
        XCTAssertEqual(row.p50!.delta.change!, 0.5, accuracy: 0.05)
        XCTAssertGreaterThan(row.p50!.delta.lowChange!, 0.3)
        XCTAssertFalse(row.count.flagged, "same count")
        // Without blocks there is no interval, so nothing is flagged.
        let plain = TraceComparison(TraceSummary(records: exits(4000, median: 1000, seed: 1)),
                                    TraceSummary(records: exits(4000, median: 1500, seed: 2)))
        XCTAssertFalse(plain.rows[0].flagged)
        XCTAssertNil(plain.rows[0].p50!.delta.low)
    }

    func testRunNoiseRaisesTheBarForTimes() throws {
        let a = try summary(exits(4000, median: 1000, seed: 1), "a.trc")
        let b15 = try summary(exits(4000, median: 1150, seed: 2), "b15.trc")
        let b50 = try summary(exits(4000, median: 1500, seed: 3), "b50.trc")
        let noisy = TraceComparison.Settings(runNoise: 0.2)
        XCTAssertEqual(TraceComparison(a, b15).rows[0].flags, ["p50", "p99"], "15% is beyond the threshold...")
        XCTAssertEqual(TraceComparison(a, b15, settings: noisy).rows[0].flags, [], "...but not beyond 20% of run noise")
        XCTAssertEqual(TraceComparison(a, b50, settings: noisy).rows[0].flags, ["p50", "p99"])
        // Counts are not times: run noise leaves them alone.
        let more = try summary(exits(8000, median: 1000, seed: 4), "more.trc")
        XCTAssertEqual(TraceComparison(a, more, settings: noisy).rows[0].flags, ["count"])
    }

    func testMinimumCountAndRowsOnOneSide() throws {
        // 20 exits three times slower: shown, not tested.
        let a = try summary(exits(20, median: 1000, seed: 1) + exits(100, kind: .hlt, median: 50, seed: 4), "a.trc")
        let b = try summary(exits(20, median: 3000, seed: 2) + exits(10, kind: .rdmsr, median: 50, seed: 5)
                            + exits(60, kind: .wrmsr, median: 50, seed: 6), "b.trc")
        let c = TraceComparison(a, b)
        XCTAssertEqual(c.rows.map { $0.reason!.name }, ["io-out", "hlt", "rdmsr", "wrmsr"])
        let io = c.rows[0]
        XCTAssertFalse(io.enoughSamples)
        XCTAssertEqual(io.p50!.delta.change!, 2, accuracy: 0.2)
        XCTAssertFalse(io.flagged, "below the minimum count")
        XCTAssertEqual(c.rows[1].flags, ["gone"], "100 exits in A only")
        XCTAssertEqual(c.rows[2].flags, [], "10 exits in B only: too few")
        XCTAssertEqual(c.rows[3].flags, ["new"])
        XCTAssertEqual(c.rows[3].p50A, nil)
        XCTAssertEqual(c.rows[3].p50B!, 50, accuracy: 10)
        // The same 20 exits, alone in their traces, so spread over every block: flagged once 20 is enough.
        let fewA = try summary(exits(20, median: 1000, seed: 1), "fa.trc"), fewB = try summary(exits(20, median: 3000, seed: 2), "fb.trc")
        XCTAssertFalse(TraceComparison(fewA, fewB).rows[0].flagged)
        XCTAssertEqual(TraceComparison(fewA, fewB, settings: .init(minCount: 10)).rows[0].flags, ["p50", "p99"])
    }

    func testCountsAreNormalisedAndTested() {
        let a = TraceSummary(records: exits(1000, median: 100, seed: 1))
        let b = TraceSummary(records: exits(2100, median: 100, seed: 2))
        let raw = TraceComparison(a, b)
        XCTAssertEqual(raw.rows[0].count.ratio ?? 0, 2.1, accuracy: 1e-12)
        XCTAssertEqual(raw.rows[0].flags, ["count"])
        XCTAssertGreaterThan(raw.rows[0].count.low!, 0.9)
        let perUnit = TraceComparison(a, b, unitsA: 10, unitsB: 20)
        XCTAssertEqual(perUnit.rows[0].count.normB, 105)
        XCTAssertEqual(perUnit.rows[0].count.change ?? 0, 0.05, accuracy: 1e-12)
        XCTAssertFalse(perUnit.rows[0].count.flagged, "5% per unit")
        XCTAssertEqual(perUnit.levels.map(\.level), [1])
        XCTAssertEqual(perUnit.levels[0].count.a, 1000)
        var m = TraceMetadata()
        m["iterations"] = "5000"
        m["cmdline"] = "pio-storm.elf 2000 x"
        XCTAssertEqual(TraceComparison.workUnits(m, key: "iterations"), 5000)
        XCTAssertEqual(TraceComparison.workUnits(m, key: "cmdline"), 2000)
        XCTAssertNil(TraceComparison.workUnits(m, key: "image"))
    }

    /// `episodes` L2 exits reflected to L1, each followed by `extra` L1 exits.
    private func nested(episodes: Int, extra: Int) -> [TraceRecord] {
        var records: [TraceRecord] = []
        var t: UInt64 = 0
        for e in 1...episodes {
            records.append(TraceRecord(timestamp: t, duration: 500, level: 2, kind: .ioOut, episode: UInt64(e),
                                       vmxReason: 30, handler: .reflected))
            for _ in 0..<extra {
                t += 1000
                records.append(TraceRecord(timestamp: t, duration: 100, level: 1, kind: .internalError,
                                           episode: UInt64(e), vmxReason: 23))
            }
            t += 1000
        }
        return records
    }

    func testEpisodeRootsCompareMultiplication() throws {
        let pa = try writeTrace("a.trc", nested(episodes: 400, extra: 6))
        let pb = try writeTrace("b.trc", nested(episodes: 400, extra: 8))
        let ra = try TraceReader(path: pa), rb = try TraceReader(path: pb)
        let c = TraceComparison(TraceSummary(ra, blocks: 20), TraceSummary(rb, blocks: 20),
                                episodesA: EpisodeAnalysis(ra), episodesB: EpisodeAnalysis(rb))
        XCTAssertEqual(c.episodes.count, 1)
        let e = c.episodes[0]
        XCTAssertEqual(e.reason.name, "IO_INSTRUCTION")
        XCTAssertEqual(e.meanMultiplicationA, 7)
        XCTAssertEqual(e.meanMultiplicationB, 9)
        XCTAssertEqual(e.multiplicationA?.p50, 7)
        XCTAssertFalse(e.episodes.flagged)
        XCTAssertEqual(e.flags, ["exits p50", "exits p99", "time p50", "time p99"])
        let same = TraceComparison(TraceSummary(ra, blocks: 20), TraceSummary(ra, blocks: 20),
                                   episodesA: EpisodeAnalysis(ra), episodesB: EpisodeAnalysis(ra))
        XCTAssertFalse(same.episodes[0].flagged)
        XCTAssertEqual(same.flagged.count, 0)
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
