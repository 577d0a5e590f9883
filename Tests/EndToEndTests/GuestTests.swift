import Foundation
import TraceFormat
import XCTest

/// Boots each guest in Guests/ on KVM through the `terrapin` binary and
/// checks what it prints, its exit status and the trace it leaves.
final class GuestTests: XCTestCase {
    override func setUpWithError() throws { try Harness.prepare() }

    /// Runs a guest with a trace; asserts it passed (status 1 = debug-exit value 0).
    private func runPassing(_ guest: String, _ args: String, file: StaticString = #filePath, line: UInt = #line)
        throws -> (Harness.Result, TraceReader) {
        let trace = Harness.temporaryPath("\(guest).trc")
        let r = try Harness.terrapin(["run", Harness.guest(guest), "--append", args, "--trace", trace])
        XCTAssertEqual(r.status, 1, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)", file: file, line: line)
        XCTAssertFalse(r.stdout.contains("FAIL:"), r.stdout, file: file, line: line)
        XCTAssertTrue(r.stdout.contains(", 0 failures"), r.stdout, file: file, line: line)
        let reader = try TraceReader(path: trace)
        XCTAssertTrue(reader.finished, file: file, line: line)
        return (r, reader)
    }

    private func count(_ reader: TraceReader, _ kind: ExitKind, address: UInt64? = nil) -> Int {
        reader.lazy.filter { $0.kind == kind && (address == nil || $0.address == address) }.count
    }

    func testHelloPassesItsChecksAndSeesItsCommandLine() throws {
        let (r, trace) = try runPassing("hello", "alpha beta")
        XCTAssertTrue(r.stdout.contains("Hello from hello.elf"), r.stdout)
        XCTAssertTrue(r.stdout.contains("alpha"), r.stdout)
        XCTAssertTrue(r.stdout.contains("SUMMARY: 9 tests, 0 failures"), r.stdout)
        XCTAssertTrue(r.stdout.contains("PASS: INT 0x80 enters its handler once"), r.stdout)
        // Every byte of serial output is one OUT to 0x3f8 in the trace.
        XCTAssertEqual(count(trace, .ioOut, address: 0x3f8), r.stdout.utf8.count)
        // The unclaimed-port probe is traced as such.
        XCTAssertTrue(trace.contains { $0.kind == .ioIn && $0.address == 0x3e8 && $0.flags.contains(.unclaimed) && $0.value == 0xff })
        XCTAssertEqual(trace.metadata["cmdline"], "hello.elf alpha beta")
        // The run's time zero on CLOCK_MONOTONIC and vCPU 0's thread, for lining up with host traces.
        let base = try XCTUnwrap(try trace.metadata.number(TraceMetadata.monotonicBaseKey).get())
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        XCTAssertLessThan(base, UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec), "a time zero in the past")
        XCTAssertGreaterThan(base, 0)
        let tid = try XCTUnwrap(try trace.metadata.number(TraceMetadata.vcpu0ThreadKey).get())
        XCTAssertGreaterThan(tid, 0)
        XCTAssertEqual(trace.metadata[TraceMetadata.vcpu0ThreadKey]?.count, TraceMetadata.threadWidth)
        // hello reports no unit of work: the key stays a blank placeholder.
        XCTAssertEqual(trace.metadata[TraceMetadata.iterationsKey], String(repeating: " ", count: TraceMetadata.iterationsWidth))
        XCTAssertNil(try trace.metadata.number(TraceMetadata.iterationsKey).get())
    }

    func testPIOStormExitsOncePerWrite() throws {
        let (_, trace) = try runPassing("pio-storm", "3000")
        XCTAssertEqual(count(trace, .ioOut, address: 0x80), 3000)
        // Its loop count, reported through the work-report port, is the trace's `iterations`.
        XCTAssertEqual(try trace.metadata.number(TraceMetadata.iterationsKey).get(), 3000)
        XCTAssertEqual(trace.metadata[TraceMetadata.iterationsKey]?.count, TraceMetadata.iterationsWidth)
        XCTAssertEqual(count(trace, .ioOut, address: 0x5a0), 1)
        XCTAssertTrue(trace.filter { $0.kind == .ioOut && $0.address == 0x80 }.allSatisfy { $0.size == 1 && $0.rip != 0 })
    }

    func testPIOStormToAnUnclaimedPortIsTracedAsUnclaimed() throws {
        let (_, trace) = try runPassing("pio-storm", "500 port=0x2f8")
        let records = trace.filter { $0.kind == .ioOut && $0.address == 0x2f8 }
        XCTAssertEqual(records.count, 500)
        XCTAssertTrue(records.allSatisfy { $0.flags.contains(.unclaimed) })
    }

    func testMMIOStormWritesToAnUnbackedAddress() throws {
        let (_, trace) = try runPassing("mmio-storm", "3000")
        XCTAssertEqual(try trace.metadata.number(TraceMetadata.iterationsKey).get(), 3000, "the reported loop count")
        let writes = trace.filter { $0.kind == .mmioWrite && $0.address == 0xd000_0000 }
        XCTAssertEqual(writes.count, 3000)
        XCTAssertTrue(writes.allSatisfy { $0.flags.contains(.unclaimed) && $0.size == 4 })
        XCTAssertTrue(trace.contains { $0.kind == .mmioRead && $0.address == 0xd000_0000 && $0.value == 0xffff_ffff })
    }

    func testMSRStormReadsTheEmulatedAPICBase() throws {
        let (_, trace) = try runPassing("msr-storm", "3000")
        XCTAssertEqual(try trace.metadata.number(TraceMetadata.iterationsKey).get(), 3000, "the reported loop count")
        let reads = trace.filter { $0.kind == .rdmsr && $0.address == 0x1b }
        XCTAssertEqual(reads.count, 3000)
        XCTAssertTrue(reads.allSatisfy { $0.value == 0xfee0_0900 && !$0.flags.contains(.faulted) })
    }

    func testHLTStormIsWokenByTheAPICTimerEveryTime() throws {
        let (_, trace) = try runPassing("hlt-storm", "1000")
        XCTAssertEqual(try trace.metadata.number(TraceMetadata.iterationsKey).get(), 1000, "the reported loop count")
        XCTAssertEqual(count(trace, .hlt), 1000)
        let injected = trace.filter { $0.kind == .interruptInjected }
        XCTAssertEqual(injected.count, 1000)
        XCTAssertTrue(injected.allSatisfy { $0.value == 0x40 })
        // Each wake-up is acknowledged with an EOI write to the APIC.
        XCTAssertEqual(count(trace, .mmioWrite, address: 0xfee0_00b0), 1000)
    }

    func testAPICTimerInterruptsABusyLoopThroughAKick() throws {
        let (r, trace) = try runPassing("apic-timer", "window")
        XCTAssertTrue(r.stdout.contains("SUMMARY: 9 tests, 0 failures"), r.stdout)
        // sti; nop; cli with a self-IPI pending: L0 single-steps the guest
        // until the window opens, and the IPI is taken after the NOP.
        XCTAssertTrue(r.stdout.contains("PASS: a pending self-IPI is taken in the one-instruction window"), r.stdout)
        XCTAssertGreaterThan(count(trace, .debug), 0)
        // The busy loop never exits on its own: the host timer's kick does it.
        XCTAssertGreaterThan(count(trace, .interrupted), 0)
        XCTAssertTrue(trace.contains { $0.kind == .interruptInjected && $0.value == 0x40 })
        XCTAssertTrue(trace.contains { $0.kind == .interruptInjected && $0.value == 0x50 })
    }

    func testSingleStepTrapsEveryInstruction() throws {
        let (r, _) = try runPassing("single-step", "2000")
        XCTAssertTrue(r.stdout.contains("PASS: TF traps after every instruction: 4003 traps for 2000 rounds, 8003 for 4000"), r.stdout)
        XCTAssertTrue(r.stdout.contains("SUMMARY: 2 tests, 0 failures"), r.stdout)
    }

    func testComputeHasNoExitsBesidesItsConsole() throws {
        let (r, trace) = try runPassing("compute", "")
        XCTAssertTrue(r.stdout.contains("PASS"), r.stdout)
        let others = trace.filter { !($0.kind == .ioOut && ($0.address == 0x3f8 || $0.address == 0xf4)) && $0.kind != .ioIn }
        XCTAssertEqual(others.count, 0, "unexpected exits: \(others.prefix(5))")
    }

    func testSummaryOfARealTrace() throws {
        let (_, _) = try runPassing("pio-storm", "2000")
        let path = Harness.temporaryPath("pio-storm.trc")
        let text = try Harness.terrapinTrace(["summary", path])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("io-out"), text.stdout)
        XCTAssertTrue(text.stdout.contains("pio-storm.elf 2000"), text.stdout)
        let json = try Harness.terrapinTrace(["summary", path, "--json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        XCTAssertNotNil(object, json.stdout)
    }

    func testSerialOutputToAFile() throws {
        let out = Harness.temporaryPath("serial.txt")
        let r = try Harness.terrapin(["run", Harness.guest("hello"), "--serial", out])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertFalse(r.stdout.contains("Hello"), r.stdout)
        let text = try String(contentsOfFile: out, encoding: .utf8)
        XCTAssertTrue(text.contains("Hello from hello.elf"), text)
    }

    func testAKilledRunLeavesAReadableTrace() throws {
        let trace = Harness.temporaryPath("killed.trc")
        let process = Process()
        process.executableURL = Harness.binDirectory.appendingPathComponent("terrapin")
        process.arguments = ["run", Harness.guest("pio-storm"), "--append", "100000000", "--trace", trace, "--serial", "/dev/null"]
        try process.run()
        // Wait (bounded) until at least two batches are on disk, then SIGKILL.
        let deadline = Date().addingTimeInterval(60)
        var size = 0
        while size < 64 * 4096 * 2 && Date() < deadline && process.isRunning {
            size = (try? FileManager.default.attributesOfItem(atPath: trace)[.size] as? Int) ?? 0
            usleep(10_000)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)
        let reader = try TraceReader(path: trace)
        XCTAssertFalse(reader.finished)
        XCTAssertGreaterThanOrEqual(reader.recordCount, 4096)
        XCTAssertEqual(reader.recordCount % 4096, 0, "only whole batches reach the file")
        XCTAssertTrue(reader.contains { $0.kind == .ioOut && $0.address == 0x80 })
    }
}
