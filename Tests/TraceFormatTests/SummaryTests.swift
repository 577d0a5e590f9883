import Foundation
import XCTest
@testable import TraceFormat
import VMXArch

final class SummaryTests: TraceTestCase {
    func testBucketsCoverEveryValueWithinRelativeError() {
        var rng = SeededRandom(seed: 9)
        let values: [UInt32] = Array(0...4096) + [.max, .max - 1, 1 << 31, (1 << 31) - 1]
            + (0..<20000).map { _ in UInt32(truncatingIfNeeded: rng.next() >> UInt64(rng.below(40))) }
        for v in values {
            let b = DurationBuckets.bucket(v)
            XCTAssertTrue((0..<DurationBuckets.count).contains(b), "\(v)")
            let upper = DurationBuckets.upperBound(b)
            XCTAssertGreaterThanOrEqual(upper, UInt64(v))
            XCTAssertLessThanOrEqual(Double(upper - UInt64(v)), Double(v) * DurationBuckets.relativeError, "\(v)")
            if b > 0 { XCTAssertLessThan(DurationBuckets.upperBound(b - 1), UInt64(v), "\(v)") }
        }
        XCTAssertEqual(DurationBuckets.bucket(.max), DurationBuckets.count - 1)
        XCTAssertEqual(DurationBuckets.upperBound(DurationBuckets.count - 1), UInt64(UInt32.max))
    }

    func testPercentilesOfKnownDurations() throws {
        // 1 ... 1000 µs, shuffled so order cannot matter.
        var rng = SeededRandom(seed: 3)
        var micros = Array(1...1000)
        for i in stride(from: micros.count - 1, to: 0, by: -1) { micros.swapAt(i, rng.below(i + 1)) }
        let records = micros.enumerated().map { i, us in
            TraceRecord(timestamp: UInt64(i) * 1_000_000, duration: UInt32(us * 1000), kind: .ioOut)
        }
        let s = TraceSummary(try TraceReader(path: try writeTrace("p.trc", records)))
        XCTAssertEqual(s.groups.count, 1)
        let g = try XCTUnwrap(s.group(level: 1, kind: .ioOut))
        XCTAssertEqual(g.count, 1000)
        XCTAssertEqual(g.share, 1.0)
        XCTAssertEqual(g.totalDuration, 500_500 * 1000)
        XCTAssertEqual(g.meanDuration, 500_500, accuracy: 1e-6)
        XCTAssertEqual(g.maxDuration, 1_000_000)
        for (p, exact) in [(g.p50, 500_000.0), (g.p90, 900_000.0), (g.p99, 990_000.0)] {
            XCTAssertGreaterThanOrEqual(Double(p), exact)
            XCTAssertLessThanOrEqual(Double(p), exact * (1 + DurationBuckets.relativeError))
        }
        XCTAssertEqual(g.histogram.percentile(1.0), 1_000_000, "p100 is the exact max")
        XCTAssertEqual(g.histogram.percentile(0), DurationBuckets.upperBound(DurationBuckets.bucket(1000)),
                       "p0 is the smallest value's bucket")
        XCTAssertEqual(s.runDuration, 999 * 1_000_000)
        XCTAssertEqual(s.firstTimestamp, 0)
        XCTAssertEqual(s.lastTimestamp, 999 * 1_000_000)
    }

    func testGroupsSharesUnclaimedAndRates() {
        var records: [TraceRecord] = []
        // L1: 6 io-in handled by L0 (2 unclaimed), 2 interrupt-injected events.
        for i in 0..<6 {
            records.append(TraceRecord(timestamp: UInt64(i) * 100_000_000, duration: 10, level: 1, kind: .ioIn,
                                       flags: i < 2 ? [.unclaimed] : []))
        }
        records.append(TraceRecord(timestamp: 50, duration: 1, level: 1, kind: .interruptInjected))
        records.append(TraceRecord(timestamp: 60, duration: 1, level: 1, kind: .interruptInjected))
        // L2: the same kind split by handler.
        records.append(TraceRecord(timestamp: 1_000_000_000, duration: 300, level: 2, kind: .rdmsr, handler: .reflected))
        records.append(TraceRecord(timestamp: 10, duration: 200, level: 2, kind: .rdmsr, handler: .l0,
                                   flags: [.faulted]))
        let s = TraceSummary(records: records)

        XCTAssertEqual(s.recordCount, 10)
        XCTAssertEqual(s.groups.map { "\($0.level)/\($0.reason.name)/\($0.handler.name)" },
                       ["1/io-in/l0", "1/interrupt-injected/l0", "2/rdmsr/l0", "2/rdmsr/reflected"])
        XCTAssertEqual(s.groups.map(\.count), [6, 2, 1, 1])
        XCTAssertEqual(s.groups[0].share, 0.6, accuracy: 1e-12)
        XCTAssertEqual(s.groups[0].unclaimed, 2)
        XCTAssertEqual(s.unclaimed, 2)
        XCTAssertEqual(s.group(level: 2, kind: .rdmsr, handler: .reflected)?.maxDuration, 300)
        XCTAssertEqual(s.group(level: 2, kind: .rdmsr, handler: .l0)?.maxDuration, 200)
        XCTAssertEqual(s.runDuration, 1_000_000_000)
        XCTAssertEqual(s.levels.map(\.level), [1, 2])
        XCTAssertEqual(s.levels.map(\.records), [8, 2])
        XCTAssertEqual(s.levels.map(\.exits), [6, 2], "events are not exits")
        XCTAssertEqual(s.levels[0].exitsPerSecond ?? -1, 6, accuracy: 1e-9)
        XCTAssertEqual(s.levels[1].exitsPerSecond ?? -1, 2, accuracy: 1e-9)
    }

    func testOddHandlerBytesGetTheirOwnGroups() {
        let records = [
            TraceRecord(timestamp: 0, duration: 5, kind: .hlt, handler: Handler(rawValue: 7)),
            TraceRecord(timestamp: 1, duration: 6, kind: .hlt, handler: Handler(rawValue: 7)),
            TraceRecord(timestamp: 2, duration: 7, kind: .hlt),
        ]
        let s = TraceSummary(records: records)
        XCTAssertEqual(s.group(level: 1, kind: .hlt, handler: Handler(rawValue: 7))?.count, 2)
        XCTAssertEqual(s.group(level: 1, kind: .hlt)?.count, 1)
    }

    func testEmptyTrace() throws {
        let s = TraceSummary(try TraceReader(path: try writeTrace("e.trc", [])))
        XCTAssertEqual(s.recordCount, 0)
        XCTAssertTrue(s.groups.isEmpty)
        XCTAssertNil(s.firstTimestamp)
        XCTAssertEqual(s.runDuration, 0)
        XCTAssertTrue(s.levels.isEmpty)
    }

    func testSingleRecordHasNoRate() {
        let s = TraceSummary(records: [TraceRecord(timestamp: 5, duration: 1, kind: .hlt)])
        XCTAssertEqual(s.runDuration, 0)
        XCTAssertNil(s.levels.first?.exitsPerSecond)
        XCTAssertEqual(s.levels.first?.exits, 1)
    }

    func testGroupsByVMXReasonWhenPresent() {
        let records = [
            TraceRecord(timestamp: 0, duration: 10, level: 2, kind: .ioOut, vmxReason: 30, handler: .reflected),
            TraceRecord(timestamp: 1, duration: 20, level: 2, kind: .ioIn, vmxReason: 30, handler: .reflected),
            TraceRecord(timestamp: 2, duration: 30, level: 2, kind: .ioIn, vmxReason: 30),
            TraceRecord(timestamp: 3, duration: 5, level: 1, kind: .internalError, vmxReason: 23),
            TraceRecord(timestamp: 4, duration: 5, level: 1, kind: .ioOut),
            TraceRecord(timestamp: 5, duration: 7, level: 1, kind: .internalError, vmxReason: 70_000),
        ]
        let s = TraceSummary(records: records)
        XCTAssertEqual(s.groups.map { "\($0.level)/\($0.reason.name)/\($0.handler.name)/\($0.count)" },
                       ["1/io-out/l0/1", "1/VMREAD/l0/1", "1/VMX_REASON_70000/l0/1",
                        "2/IO_INSTRUCTION/l0/1", "2/IO_INSTRUCTION/reflected/2"])
        XCTAssertEqual(s.group(level: 2, reason: .vmx(30), handler: .reflected)?.totalDuration, 30)
        XCTAssertNil(s.group(level: 2, kind: .ioOut, handler: .reflected), "a VMX reason replaces the kind")
        XCTAssertEqual(s.levelTotals.map(\.time), [17, 60])
    }

    func testReasonNames() {
        XCTAssertEqual(ExitReason.vmx(48).name, "EPT_VIOLATION")
        XCTAssertEqual(ExitReason.vmx(0).name, "EXCEPTION_NMI")
        XCTAssertEqual(ExitReason.vmx(77).name, "TDCALL")
        XCTAssertEqual(ExitReason.vmx(35).name, "VMX_REASON_35")
        XCTAssertEqual(ExitReason.kind(.hlt).name, "hlt")
        XCTAssertEqual(ExitReason(TraceRecord(timestamp: 0, duration: 0, kind: .hlt, vmxReason: 12)).name, "HLT")
        XCTAssertTrue(ExitReason.kind(ExitKind(rawValue: 255)) < ExitReason.vmx(0))
    }

    /// The trace tool names VMX reasons from VMXArch's one table (SDM Vol. 3C
    /// Appendix C), including the reasons TraceFormat's old copy lacked.
    func testReasonNamesComeFromVMXArch() {
        XCTAssertEqual(ExitReason.vmx(65).name, "PCONFIG")
        XCTAssertEqual(ExitReason.vmx(78).name, "RDMSRLIST")
        XCTAssertEqual(ExitReason.vmx(79).name, "WRMSRLIST")
        XCTAssertEqual(ExitReason.vmx(.eptViolation), ExitReason.vmx(48))
        for reason in VMXExitReason.allKnown {
            XCTAssertEqual(ExitReason.vmx(reason).name, reason.name, "\(reason.rawValue)")
        }
        // Beyond 16 bits no basic reason exists; the number must not be truncated onto one.
        XCTAssertEqual(ExitReason.vmx(0x1_0030).name, "VMX_REASON_65584")
    }

    func testMinimumAndStandardDeviation() {
        var h = DurationHistogram()
        XCTAssertEqual(h.minimum, 0)
        XCTAssertEqual(h.standardDeviation, 0)
        for d: UInt32 in [2, 4, 4, 4, 5, 5, 7, 9] { h.add(d) }
        XCTAssertEqual(h.minimum, 2)
        XCTAssertEqual(h.standardDeviation, 2, accuracy: 1e-12)
        let s = TraceSummary(records: [TraceRecord(timestamp: 0, duration: 70, kind: .hlt),
                                       TraceRecord(timestamp: 1, duration: 30, kind: .hlt)])
        XCTAssertEqual(s.groups[0].minDuration, 30)
        XCTAssertEqual(s.groups[0].standardDeviation, 20, accuracy: 1e-12)
        var merged = DurationHistogram()
        merged.merge(h)
        merged.merge(s.groups[0].histogram)
        XCTAssertEqual(merged.count, 10)
        XCTAssertEqual(merged.minimum, 2)
        XCTAssertEqual(merged.max, 70)
    }

    func testDurationCells() {
        XCTAssertEqual(durationCell(Double(60)), "60 ns")
        XCTAssertEqual(durationCell(Double(999)), "999 ns")
        XCTAssertEqual(durationCell(Double(1000)), "1.0 µs")
        XCTAssertEqual(durationCell(Double(12_345)), "12.3 µs")
        XCTAssertEqual(durationCell(Double(999_960)), "1.000 ms")
        XCTAssertEqual(durationCell(Double(4_567_000)), "4.567 ms")
        XCTAssertEqual(durationCell(Double(182_000_000_000)), "182.000 s")
    }
}
