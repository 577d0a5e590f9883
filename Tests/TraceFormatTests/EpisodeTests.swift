import Foundation
import XCTest
@testable import TraceFormat
import VMXArch

final class EpisodeTests: TraceTestCase {
    private func l2(_ t: UInt64, _ reason: UInt32, episode: UInt64, reflected: Bool = true, vcpu: UInt16 = 0) -> TraceRecord {
        TraceRecord(timestamp: t, duration: 100, level: 2, kind: .ioOut, vcpu: vcpu, episode: episode, vmxReason: reason,
                    handler: reflected ? .reflected : .l0)
    }

    private func l1(_ t: UInt64, _ reason: UInt32, episode: UInt64, dur: UInt32 = 50, vcpu: UInt16 = 0) -> TraceRecord {
        TraceRecord(timestamp: t, duration: dur, level: 1, kind: .internalError, vcpu: vcpu, episode: episode, vmxReason: reason)
    }

    func testEpisodeSemantics() throws {
        let records = [
            l2(1000, 48, episode: 1, vcpu: 0),
            l2(1010, 30, episode: 2, vcpu: 1),                      // interleaved vCPU
            l1(1200, 23, episode: 1), l1(1300, 23, episode: 1),
            l1(1250, 23, episode: 2, vcpu: 1),
            TraceRecord(timestamp: 1350, duration: 0, level: 1, kind: .interruptInjected, episode: 1),   // event: no exit
            l1(1400, 25, episode: 1), l1(1500, 24, episode: 1, dur: 700),
            l1(1600, 24, episode: 2, vcpu: 1),
            l1(1700, 23, episode: 9),                               // orphan
            l2(1800, 12, episode: 0),                               // reflected without an id
            l2(1900, 12, episode: 0, reflected: false),             // handled by L0
        ]
        let a = EpisodeAnalysis(try TraceReader(path: try writeTrace("e.trc", records)))
        XCTAssertEqual(a.episodes.map(\.id), [1, 2])
        let e1 = a.episodes[0]
        XCTAssertEqual(e1.exits, 5, "the L2 exit, 2 VMREADs, a VMWRITE, a VMRESUME; the event is not an exit")
        XCTAssertEqual(e1.records, 6)
        XCTAssertEqual(e1.time, 1500 + 700 - 1000)
        XCTAssertEqual(e1.rootReason.name, "EPT_VIOLATION")
        XCTAssertEqual(e1.firstRecord, 0)
        XCTAssertEqual(e1.lastRecord, 7)
        XCTAssertEqual(a.episodes[1].exits, 3)
        XCTAssertEqual(a.episodes[1].vcpu, 1)
        XCTAssertEqual(a.orphanEpisodes, 1)
        XCTAssertEqual(a.orphanRecords, 1)
        XCTAssertEqual(a.reflectedWithoutEpisode, 1)
        XCTAssertEqual(a.totalExits, 11)
        XCTAssertEqual(a.exitsInEpisodes, 8)
        XCTAssertEqual(a.multiplication.count, 2)
        XCTAssertEqual(a.multiplication.max, 5)
        XCTAssertEqual(a.sequences.map(\.text), ["EPT_VIOLATION → VMREAD×2 → VMWRITE → VMRESUME",
                                                 "IO_INSTRUCTION → VMREAD → VMRESUME"])
        XCTAssertEqual(a.worst(1).map(\.id), [1])
    }

    func testSequencesAreCountedAcrossEpisodes() throws {
        var records: [TraceRecord] = []
        var t: UInt64 = 0
        for id in 1...30 as ClosedRange<UInt64> {
            records.append(l2(t, id % 3 == 0 ? 12 : 30, episode: id)); t += 200
            for _ in 0..<(id % 3 == 0 ? 2 : 4) { records.append(l1(t, 23, episode: id)); t += 100 }
            records.append(l1(t, 24, episode: id)); t += 1000
        }
        let a = EpisodeAnalysis(try TraceReader(path: try writeTrace("s.trc", records)), topSequences: 5)
        XCTAssertEqual(a.sequences.map(\.episodes), [20, 10])
        XCTAssertEqual(a.sequences.map(\.text), ["IO_INSTRUCTION → VMREAD×4 → VMRESUME", "HLT → VMREAD×2 → VMRESUME"])
        XCTAssertEqual(a.sequences.map(\.exits), [6, 4])
        XCTAssertEqual(a.multiplication.percentile(0.5), 6)
    }

    func testSingleLevelTraceHasNoEpisodes() throws {
        let a = EpisodeAnalysis(try TraceReader(path: try writeTrace("p.trc", sampleRecords(50).map {
            var r = $0; r.episode = 0; r.handler = .l0; return r
        })))
        XCTAssertTrue(a.episodes.isEmpty)
        XCTAssertTrue(a.sequences.isEmpty)
        XCTAssertEqual(a.exitsInEpisodes, 0)
    }

    func testGeneratedTraceEpisodesAreWellFormed() throws {
        let p = path("g.trc")
        let l2 = try SyntheticTrace(records: 4000, seed: 21).write(to: p)
        let reader = try TraceReader(path: p)
        XCTAssertEqual(reader.recordCount, 4000)
        XCTAssertEqual(TraceComparison.workUnits(reader.metadata, key: "iterations"), Double(l2))
        var last: UInt64 = 0
        reader.forEach { r in
            XCTAssertGreaterThan(r.timestamp, last)
            last = r.timestamp
        }
        let a = EpisodeAnalysis(reader)
        XCTAssertGreaterThan(a.episodes.count, 100)
        XCTAssertEqual(a.orphanEpisodes, 0)
        for e in a.episodes.dropLast() {
            let steps = EpisodeAnalysis.steps(of: e, in: reader)
            XCTAssertEqual(steps.first?.reason.isVMX, true)
            XCTAssertEqual(steps.last?.reason, .vmx(.vmresume))
            XCTAssertEqual(reader[e.firstRecord].level, 2)
            XCTAssertEqual(reader[e.firstRecord].handler, .reflected)
        }
        let shadow = path("s.trc")
        try SyntheticTrace(records: 4000, seed: 21, profile: .shadow).write(to: shadow)
        let b = EpisodeAnalysis(try TraceReader(path: shadow))
        XCTAssertLessThan(b.multiplication.mean, a.multiplication.mean / 2, "shadow VMCS removes most VMREAD/VMWRITE exits")
    }

    func testBursts() {
        var d = BurstDetector(window: 1000)
        for t in stride(from: 0 as UInt64, to: 10_000, by: 500) { d.add(t) }     // 2 per window
        for t in stride(from: 4000 as UInt64, to: 6000, by: 50) { d.add(t) }    // +20 per window in 4 and 5
        d.add(UInt64(BurstDetector.maxWindows) * 1000 + 5)
        let r = d.finish(threshold: 5e6)
        XCTAssertEqual(r.windowCount, 10)
        XCTAssertEqual(r.hotWindows, 2)
        XCTAssertEqual(r.bursts, [BurstDetector.Burst(start: 4000, end: 6000, windows: 2, exits: 44, rate: 22e6, peakRate: 22e6)])
        XCTAssertEqual(r.beyondHorizon, 1)
        // A gap of empty windows ends a burst; a burst resumes only in the next window.
        var gap = BurstDetector(window: 1000)
        for t: UInt64 in [100, 200, 1100, 1200, 5100, 5200, 4100, 4150] { gap.add(t) }     // out of order too
        XCTAssertEqual(gap.finish(threshold: 1e6).bursts.map(\.windows), [2, 2])
        // Two exits 2^24 - 1 windows apart: only the windows with exits are kept and scanned.
        var wide = BurstDetector(window: 1000)
        wide.add(0)
        wide.add(UInt64(BurstDetector.maxWindows - 1) * 1000)
        let w = wide.finish(threshold: 0)
        XCTAssertEqual(w.windowCount, BurstDetector.maxWindows)
        XCTAssertEqual(w.hotWindows, 2)
        XCTAssertEqual(w.bursts.count, 2)
        XCTAssertEqual(wide.counts.count, 1, "the current window aside, one window is stored")
        XCTAssertEqual(BurstThreshold("3x"), .meanMultiple(3))
        XCTAssertEqual(BurstThreshold("50k"), .rate(50_000))
        XCTAssertEqual(BurstThreshold("2.5M"), .rate(2_500_000))
        XCTAssertNil(BurstThreshold("fast"))
        XCTAssertEqual(parseDuration("1ms"), 1_000_000)
        XCTAssertEqual(parseDuration("250us"), 250_000)
        XCTAssertEqual(parseDuration("2s"), 2_000_000_000)
        XCTAssertEqual(parseDuration("5000"), 5000)
        XCTAssertNil(parseDuration("0"))
        XCTAssertNil(parseDuration("-1ms"))
    }
}
