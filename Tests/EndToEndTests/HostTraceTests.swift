import Foundation
import TraceFormat
import XCTest

/// `terrapin run --host-trace FILE`: KVM's events of the run through
/// tracefs, in the text `terrapin-trace align` reads. Our machines have a
/// writable tracefs (docs: /work/shared/DESIGN.md); where it is missing,
/// these tests fail with the tool's message rather than skip.
final class HostTraceTests: XCTestCase {
    override func setUpWithError() throws { try Harness.prepare() }

    /// cpuid-storm's CPUIDs never reach L0 (KVM answers them): the host
    /// trace has them, and `align` counts them as kernel-handled exits on
    /// the vCPU thread, lined up with the trace's own exits.
    func testTheHostTraceOfARunLinesUpWithItsTrace() throws {
        let trace = Harness.temporaryPath("host-cpuid.trc"), host = Harness.temporaryPath("host-cpuid.txt")
        let r = try Harness.terrapin(["run", Harness.guest("cpuid-storm"), "--append", "300", "--trace", trace, "--host-trace", host])
        XCTAssertEqual(r.status, 1, "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)")
        let reader = try TraceReader(path: trace)
        let tid = try XCTUnwrap(try reader.metadata.number(TraceMetadata.vcpu0ThreadKey).get())
        let text = try String(contentsOfFile: host, encoding: .utf8)
        XCTAssertTrue(text.contains("-\(tid) "), "events of the vCPU thread \(tid)")
        XCTAssertGreaterThanOrEqual(text.components(separatedBy: ": kvm_cpuid: ").count - 1, 300)
        XCTAssertFalse(text.contains("kvm_emulate_insn"), "only the events align reads are enabled")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/sys/kernel/tracing/instances/terrapin-\(tid)"),
                       "the tracefs instance is removed")
        let a = try Harness.terrapinTrace(["align", trace, host])
        XCTAssertEqual(a.status, 0, a.stderr)
        // "CPUID    301   0 ns  0 ns" in the table of kernel-handled exits.
        let row = try XCTUnwrap(a.stdout.split(separator: "\n").first { $0.hasPrefix("CPUID ") }, a.stdout)
        let count = try XCTUnwrap(Int(row.split(separator: " ")[1]), String(row))
        XCTAssertGreaterThanOrEqual(count, 300)
        XCTAssertTrue(a.stdout.contains("vCPU 0 thread \(tid)"), a.stdout)
    }

    func testBadHostTraceOptionsAndAMissingTracefsAreClearErrors() throws {
        let image = Harness.guest("hello"), trace = Harness.temporaryPath("host-bad.trc")
        let missing = try Harness.terrapin(["run", image, "--host-trace", Harness.temporaryPath("h.txt")],
                                           environment: ["TERRAPIN_TRACEFS": "/nonexistent/tracing"])
        XCTAssertEqual(missing.status, 70, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("tracefs is not available at /nonexistent/tracing"), missing.stderr)
        XCTAssertTrue(missing.stderr.contains("mount -t tracefs"), missing.stderr)
        let unwritable = try Harness.terrapin(["run", image, "--host-trace", "/nonexistent-dir/h.txt"])
        XCTAssertEqual(unwritable.status, 70, unwritable.stderr)
        XCTAssertTrue(unwritable.stderr.contains("--host-trace: cannot create /nonexistent-dir/h.txt"), unwritable.stderr)
        for (args, message) in [(["--host-trace", ""], "--host-trace needs a file name"),
                                (["--trace", trace, "--host-trace", trace], "--host-trace and --trace must be different files")] {
            let r = try Harness.terrapin(["run", image] + args)
            XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }
}
