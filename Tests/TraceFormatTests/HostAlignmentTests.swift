import Foundation
import XCTest
@testable import TraceFormat

/// Host `kvm:*` text (trace-cmd report, perf script), the metadata that lines
/// a trace up with it, and the merge of kernel-handled exits.
final class HostAlignmentTests: TraceTestCase {
    func testTraceCmdAndPerfLinesParse() throws {
        let text = """
            version = 6
            cpus=2
              terrapin-4021  [001] d..1.  8123.456789: kvm_exit:             vcpu 0 reason CPUID rip 0xffffffff8106b0f2 info1 0x0 info2 0x0
              my comm-4021  [001]  8123.4568: kvm_entry:            vcpu 0, rip 0xffffffff8106b0f4
                    terrapin  4021 [000]  8124.000000001:  kvm:kvm_exit: reason EPT_VIOLATION rip 0x1000 info 181 0
                    terrapin 4000/4022 [000]  8124.5:  kvm:kvm_userspace_exit: reason KVM_EXIT_IO (2)
              terrapin-4021  [001]  8125.000000: sched_switch: prev_comm=terrapin
            """
        let h = try HostTrace(text: text, path: "host.txt")
        XCTAssertEqual(h.events.map(\.kind), [.exit, .entry, .exit, .userspaceExit])
        XCTAssertEqual(h.events.map(\.tid), [4021, 4021, 4021, 4022])
        XCTAssertEqual(h.events.map(\.time), [8_123_456_789_000, 8_123_456_800_000, 8_124_000_000_001, 8_124_500_000_000])
        XCTAssertEqual(h.events.map(\.reason), ["CPUID", "", "EPT_VIOLATION", ""])
        XCTAssertEqual(h.events[0].rip, 0xffff_ffff_8106_b0f2)
        XCTAssertEqual(h.lines, 7)
        XCTAssertEqual(h.skipped, 3)
    }

    func testMalformedHostTextNamesTheLine() {
        let cases: [(String, String)] = [
            ("a-1 [000] 12.5: sched_switch: x\nb-1 [000] soon: kvm_exit: reason HLT", "line 2: cannot read the timestamp before kvm_exit"),
            ("b [000] 12.5: kvm_exit: reason HLT", "line 1: cannot read the thread id before kvm_exit"),
            ("b-1 12.5: kvm_exit: reason HLT", "line 1: cannot read the thread id"),
            ("b-1 [000] 12.5: kvm_exit: vcpu 0", "line 1: kvm_exit without a reason"),
            ("b-1 [000] 12.5: kvm_exit: reason HLT rip zz", "line 1: kvm_exit rip 'zz' is not a hex number"),
            ("b-1 [000] 12.1234567891: kvm_exit: reason HLT", "line 1: cannot read the timestamp"),
            ("b-1 [000] 12.5: kvm_entry: vcpu 0\n", "line 2: no kvm_exit (or kvm_cpuid, kvm_msr, ...) events (expected `trace-cmd report` or `perf script`"),
            ("", "line 1: no kvm_exit (or kvm_cpuid, kvm_msr, ...) events"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try HostTrace(text: text, path: "h.txt"), text) { error in
                XCTAssertTrue("\(error)".hasPrefix("h.txt: " + message), "\(error)")
            }
        }
    }

    func testPatchedMetadataReadsBack() throws {
        var m = sampleMetadata
        m[TraceMetadata.monotonicBaseKey] = String(repeating: " ", count: TraceMetadata.monotonicBaseWidth)
        m[TraceMetadata.vcpu0ThreadKey] = String(repeating: " ", count: TraceMetadata.threadWidth)
        let p = path("p.trc")
        let w = try TraceWriter(path: p, metadata: m)
        w.append(TraceRecord(timestamp: 1, duration: 2, kind: .hlt))
        // Before the patch, the values are blank: unknown, not an error.
        XCTAssertEqual(try TraceReader(path: p).metadata.number(TraceMetadata.monotonicBaseKey).get(), nil)
        try w.patchMetadata(TraceMetadata.monotonicBaseKey, TraceMetadata.padded(.max, width: TraceMetadata.monotonicBaseWidth))
        try w.patchMetadata(TraceMetadata.vcpu0ThreadKey, TraceMetadata.padded(4021, width: TraceMetadata.threadWidth))
        XCTAssertThrowsError(try w.patchMetadata("vcpus", "22")) { XCTAssertTrue("\($0)".contains("2 bytes for a 1-byte value"), "\($0)") }
        XCTAssertThrowsError(try w.patchMetadata("nosuch", "1")) { XCTAssertTrue("\($0)".contains("no metadata key 'nosuch'"), "\($0)") }
        try w.finish()
        let r = try TraceReader(path: p)
        XCTAssertEqual(try r.metadata.number(TraceMetadata.monotonicBaseKey).get(), .max)
        XCTAssertEqual(try r.metadata.number(TraceMetadata.vcpu0ThreadKey).get(), 4021)
        XCTAssertEqual(r.metadata["command"], sampleMetadata["command"], "the other entries are untouched")
        XCTAssertEqual(r.count, 1)
        XCTAssertThrowsError(try w.patchMetadata(TraceMetadata.vcpu0ThreadKey, "         1"), "after finish")
        XCTAssertEqual(TraceMetadata([("x", "12a")]).number("x"), .failure(MetadataValueError(key: "x", value: "12a")))
        XCTAssertEqual(TraceMetadata([("x", "  7 ")]).number("x"), .success(7))
    }

    func testKernelHandledExitsAreMergedWithLevelAndEpisode() throws {
        // L0 saw: an L1 exit at 1000; an L2 exit reflected at 5000 (episode 3) and L1's VMRESUME at 9000.
        let records = [
            TraceRecord(timestamp: 1000, duration: 100, level: 1, kind: .ioOut),
            TraceRecord(timestamp: 5000, duration: 100, level: 2, kind: .ioOut, episode: 3, vmxReason: 30, handler: .reflected),
            TraceRecord(timestamp: 9000, duration: 100, level: 1, kind: .internalError, episode: 3, vmxReason: 24),
            TraceRecord(timestamp: 12000, duration: 100, level: 2, kind: .hlt),
        ]
        let reader = try TraceReader(path: try writeTrace("t.trc", records))
        let base: UInt64 = 7_000_000_000
        func line(_ t: UInt64, _ event: String, tid: Int = 77) -> String {
            let ns = base + t
            let frac = String(ns % 1_000_000_000)
            return "  terrapin-\(tid) [000] \(ns / 1_000_000_000).\(String(repeating: "0", count: 9 - frac.count) + frac): \(event)"
        }
        let text = [
            line(0, "kvm_exit: reason CPUID rip 0x10"), line(0, "kvm_entry: vcpu 0"),   // at the run's zero
            line(900, "kvm_exit: reason IO_INSTRUCTION rip 0x20"), line(950, "kvm_userspace_exit: reason KVM_EXIT_IO (2)"),
            line(1200, "kvm_entry: vcpu 0"),
            line(3000, "kvm_exit: reason CPUID rip 0x30"), line(3400, "kvm_entry: vcpu 0"),         // L2 running (next record)
            line(7000, "kvm_exit: reason npf rip 0x40"), line(7100, "kvm_entry: vcpu 0"),           // inside episode 3
            line(7200, "kvm_exit: reason npf rip 0x41"), line(7300, "kvm_entry: vcpu 0", tid: 78),  // another thread
            line(7400, "kvm_entry: vcpu 0"),
            line(20000, "kvm_exit: reason HLT rip 0x50"),                                            // the host trace ends
        ].joined(separator: "\n")
        let host = try HostTrace(text: text, path: "h.txt")
        let a = HostAlignment(trace: reader, host: host, base: base, tid: 77)
        XCTAssertEqual(a.otherThreadEvents, 1)
        XCTAssertEqual(a.exits, 6)
        XCTAssertEqual(a.toUserspace, 1)
        XCTAssertEqual(a.kernelHandled, 4)
        XCTAssertEqual(a.unmatched, 1)
        XCTAssertEqual(a.records.map(\.timestamp), [0, 3000, 7000, 7200])
        XCTAssertEqual(a.records.map(\.duration), [0, 400, 100, 200])
        XCTAssertEqual(a.records.map(\.level), [1, 2, 1, 1])
        XCTAssertEqual(a.records.map(\.episode), [0, 0, 3, 3])
        XCTAssertEqual(a.records.map(\.vmxReason), [10, 10, TraceRecord.noVMXReason, TraceRecord.noVMXReason])
        XCTAssertEqual(a.records.map(\.address), [0, 0, 1, 1])
        XCTAssertTrue(a.records.allSatisfy { $0.kind == .kernelExit && $0.handler == .kernel })
        XCTAssertEqual(a.otherReasons, ["npf"])
        XCTAssertEqual(a.byReason.map(\.reason), ["CPUID", "npf"])
        XCTAssertEqual(a.byReason.map(\.count), [2, 2])
        XCTAssertEqual(a.traceExitsInSpan, 2, "the records at 1000 and 5000 lie in [0, 7200], the matched exits' span")

        let merged = path("m.trc")
        try a.writeMerged(reader, hostPath: "h.txt", to: merged)
        let m = try TraceReader(path: merged)
        XCTAssertEqual(m.map(\.timestamp), [0, 1000, 3000, 5000, 7000, 7200, 9000, 12000])
        XCTAssertEqual(m.metadata["kernel_exit_reasons"], "1=npf")
        XCTAssertEqual(m.metadata["aligned_host_trace"], "h.txt")
        // Kernel-handled exits inside episode 3 count in its exit multiplication.
        let episodes = EpisodeAnalysis(m)
        XCTAssertEqual(episodes.episodes.map(\.exits), [4])
    }

    func testWithoutKvmExitOperationEventsArePairedWithUserspaceExits() throws {
        // kvm_pvm emits no kvm_exit: OUT is traced then exits, IN exits then is traced on the next
        // KVM_RUN, CPUID and one port KVM handles are traced alone.
        let text = """
            t 5 [000] 1.000000100: kvm:kvm_pio: pio_write at 0x80 size 1 count 1 val 0x1
            t 5 [000] 1.000000200: kvm:kvm_userspace_exit: reason KVM_EXIT_IO (2)
            t 5 [000] 1.000000300: kvm:kvm_userspace_exit: reason KVM_EXIT_IO (2)
            t 5 [000] 1.000000400: kvm:kvm_pio: pio_read at 0x3f8 size 1 count 1 val 0xff
            t 5 [000] 1.000000500: kvm:kvm_cpuid: func 0 idx 0 rax 1c
            t 5 [000] 1.000000600: kvm:kvm_pio: pio_write at 0x20 size 1 count 1 val 0x1
            t 5 [000] 1.000000700: kvm:kvm_msr: msr_write c0000080 = 0x100
            t 5 [000] 1.000000800: kvm:kvm_msr: msr_read c0000080 = 0x0
            t 5 [000] 1.000000900: kvm:kvm_userspace_exit: reason KVM_EXIT_X86_RDMSR (29)
            """
        let reader = try TraceReader(path: try writeTrace("t.trc", [TraceRecord(timestamp: 150, duration: 1, kind: .ioOut)]))
        let a = HostAlignment(trace: reader, host: try HostTrace(text: text, path: "h"), base: 1_000_000_000, tid: 5)
        XCTAssertEqual(a.exits, 6)
        XCTAssertEqual(a.toUserspace, 3, "the OUT, the IN and the filtered RDMSR")
        XCTAssertEqual(a.kernelHandled, 3)
        XCTAssertEqual(a.records.map(\.timestamp), [500, 600, 700])
        XCTAssertEqual(a.records.map(\.vmxReason), [10, 30, 32], "CPUID, IO_INSTRUCTION, MSR_WRITE")
        XCTAssertTrue(a.records.allSatisfy { $0.duration == 0 })
    }
}
