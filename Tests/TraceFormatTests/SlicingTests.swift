import Foundation
import XCTest
@testable import TraceFormat

/// Record filters, the per-address breakdown, per-root episode statistics
/// and the collapsing of repeated steps in sequences.
final class SlicingTests: TraceTestCase {
    /// Two vCPUs; episodes 1 (root IO_INSTRUCTION) and 2 (root EPT_VIOLATION), and L1 I/O outside any episode.
    private var records: [TraceRecord] {
        [
            TraceRecord(timestamp: 100, duration: 10, level: 2, kind: .ioOut, vcpu: 0, address: 0x80, episode: 1,
                        vmxReason: 30, handler: .reflected, size: 1),
            TraceRecord(timestamp: 200, duration: 20, level: 1, kind: .internalError, vcpu: 0, episode: 1, vmxReason: 23),
            TraceRecord(timestamp: 300, duration: 30, level: 1, kind: .internalError, vcpu: 0, episode: 1, vmxReason: 24),
            TraceRecord(timestamp: 400, duration: 40, level: 2, kind: .mmioWrite, vcpu: 1, address: 0xd000_0000, episode: 2,
                        vmxReason: 48, handler: .reflected, size: 4),
            TraceRecord(timestamp: 500, duration: 50, level: 1, kind: .internalError, vcpu: 1, episode: 2, vmxReason: 24),
            TraceRecord(timestamp: 600, duration: 60, level: 1, kind: .ioOut, vcpu: 0, address: 0x3f8, size: 1),
            TraceRecord(timestamp: 700, duration: 70, level: 1, kind: .ioOut, vcpu: 0, address: 0x3f8, size: 1,
                        flags: [.unclaimed]),
            TraceRecord(timestamp: 800, duration: 80, level: 1, kind: .rdmsr, vcpu: 1, address: 0x1b),
        ]
    }

    private func select(_ configure: (inout RecordFilter) -> Void) throws -> [TraceRecord] {
        var f = RecordFilter()
        configure(&f)
        let r = try TraceReader(filtering: try TraceReader(path: try writeTrace("f.trc", records)), by: f, description: "x")
        XCTAssertEqual(r.selection, "x")
        XCTAssertEqual(r.unfilteredRecordCount, 8)
        return Array(r)
    }

    func testFiltersSelectRecords() throws {
        XCTAssertEqual(try select { _ in }.count, 8)
        XCTAssertEqual(try select { $0.from = 300; $0.to = 600 }.map(\.timestamp), [300, 400, 500], "from inclusive, to exclusive")
        XCTAssertEqual(try select { $0.levels = [2] }.map(\.timestamp), [100, 400])
        XCTAssertEqual(try select { $0.reasons = [ExitReason.vmx(24).key] }.map(\.timestamp), [300, 500])
        XCTAssertEqual(try select { $0.reasons = [ExitReason.kind(.ioOut).key] }.map(\.timestamp), [600, 700],
                       "a kind matches records without a VMX reason only")
        XCTAssertEqual(try select { $0.handlers = [Handler.reflected.rawValue] }.map(\.timestamp), [100, 400])
        XCTAssertEqual(try select { $0.vcpus = [1] }.map(\.timestamp), [400, 500, 800])
        XCTAssertEqual(try select { $0.episodeRoots = [ExitReason.vmx(30).key] }.map(\.timestamp), [100, 200, 300])
        XCTAssertEqual(try select { $0.episodeRoots = [ExitReason.vmx(48).key]; $0.levels = [1] }.map(\.timestamp), [500])
        XCTAssertEqual(try select { $0.vcpus = [7] }.count, 0)
    }

    func testSelectionOfAnUnfinishedTraceStaysUnfinished() throws {
        let p = try writeTrace("u.trc", records)
        var b = try bytes(p)
        for i in 16..<24 { b[i] = 0xFF }
        b.append(contentsOf: [1, 2, 3])
        let source = try TraceReader(path: try store(b, "u2.trc"))
        XCTAssertFalse(source.finished)
        var f = RecordFilter()
        f.levels = [1]
        let r = try TraceReader(filtering: source, by: f)
        XCTAssertFalse(r.finished)
        XCTAssertEqual(r.recordCount, 6)
        XCTAssertEqual(TraceSummary(r).recordCount, 6)
    }

    func testReasonNames() {
        XCTAssertEqual(ExitReason(name: "io-out"), .kind(.ioOut))
        XCTAssertEqual(ExitReason(name: "EPT_VIOLATION"), .vmx(48))
        XCTAssertEqual(ExitReason(name: "vmread"), .vmx(23))
        XCTAssertEqual(ExitReason(name: "VMX_REASON_200"), .vmx(200))
        XCTAssertEqual(ExitReason(name: "kind-99"), .kind(ExitKind(rawValue: 99)))
        XCTAssertNil(ExitReason(name: "nosuch"))
        XCTAssertNil(ExitReason(name: ""))
    }

    func testAddressBreakdown() throws {
        let b = AddressBreakdown(try TraceReader(path: try writeTrace("a.trc", records)))
        XCTAssertEqual(b.records, 5)
        XCTAssertEqual(b.recordCount, 8)
        XCTAssertEqual(b.rows.count, 4)
        let first = b.rows[0]
        XCTAssertEqual([first.level], [1])
        XCTAssertEqual(first.address, 0x3f8)
        XCTAssertEqual(first.space, .port)
        XCTAssertEqual(first.count, 2)
        XCTAssertEqual(first.unclaimed, 1)
        XCTAssertEqual(first.total, 130)
        XCTAssertEqual(first.min, 60)
        XCTAssertEqual(first.max, 70)
        XCTAssertEqual(first.standardDeviation, 5, accuracy: 1e-9)
        // Ties (one exit each) by level, then reason: the L1 MSR, then the reflected L2 exits.
        XCTAssertEqual(b.rows.dropFirst().map { "\($0.space.rawValue) \(hex($0.address)) \($0.reason.name)" },
                       ["msr 0x1b rdmsr", "port 0x80 IO_INSTRUCTION", "gpa 0xd0000000 EPT_VIOLATION"])
    }

    func testRootsSplitMultiplicationByRootReason() throws {
        let a = EpisodeAnalysis(try TraceReader(path: try writeTrace("e.trc", records)))
        let roots = a.roots()
        XCTAssertEqual(roots.map(\.reason.name), ["IO_INSTRUCTION", "EPT_VIOLATION"])
        XCTAssertEqual(roots.map(\.episodes), [1, 1])
        XCTAssertEqual(roots.map(\.multiplication.max), [3, 2])
        XCTAssertEqual(roots[0].time.max, 330 - 100)
        XCTAssertEqual(roots.map(\.exits), [3, 2])
    }

    func testRepeatedStepsCollapse() {
        func seq(_ names: [String]) -> EpisodeAnalysis.ExitSequence {
            var steps: [(reason: ExitReason, count: Int)] = []
            for n in names {
                let r = ExitReason(name: n)!
                if let last = steps.last, last.reason == r { steps[steps.count - 1].count += 1 } else { steps.append((r, 1)) }
            }
            return EpisodeAnalysis.ExitSequence(steps: steps, episodes: 1, exits: names.count)
        }
        let pairs = ["IO_INSTRUCTION"] + Array(repeating: ["io-in", "io-out"], count: 375).flatMap { $0 } + ["VMRESUME"]
        XCTAssertEqual(seq(pairs).text, "IO_INSTRUCTION → (io-in → io-out)×375 → VMRESUME")
        XCTAssertEqual(seq(["VMREAD", "VMREAD", "io-in", "VMREAD", "VMREAD", "io-in", "VMWRITE"]).text,
                       "(VMREAD×2 → io-in)×2 → VMWRITE")
        XCTAssertEqual(seq(["io-in", "io-out", "io-in"]).text, "io-in → io-out → io-in", "one repeat is no group")
        XCTAssertEqual(seq(["VMREAD", "VMREAD", "VMWRITE", "VMRESUME"]).text, "VMREAD×2 → VMWRITE → VMRESUME")
        // The step limit counts groups and reports the steps left out.
        XCTAssertEqual(seq(["hlt", "io-in", "io-out", "io-in", "io-out", "rdmsr", "wrmsr"]).text(maxSteps: 2),
                       "hlt → (io-in → io-out)×2 → … (+2 steps)")
    }
}
