import Foundation
import TraceFormat
import XCTest

/// `terrapin-trace align` from the command line: its report, the merged
/// trace, and its errors for bad input.
final class AlignCommandTests: XCTestCase {
    private func file(_ name: String, _ text: String) -> String {
        let p = CLI.temporaryPath(name)
        _ = FileManager.default.createFile(atPath: p, contents: Data(text.utf8))
        return p
    }

    private let host = """
          terrapin-4021  [001]  100.000001000: kvm_exit:             reason CPUID rip 0x1000 info 0 0
          terrapin-4021  [001]  100.000001500: kvm_entry:            vcpu 0
          terrapin-4021  [001]  100.000002000: kvm_exit:             reason IO_INSTRUCTION rip 0x1010 info 0 0
          terrapin-4021  [001]  100.000002100: kvm_userspace_exit:   reason KVM_EXIT_IO (2)
          terrapin-4021  [001]  100.000002900: kvm_entry:            vcpu 0
        """

    func testReportAndMergedTrace() throws {
        let h = file("host.txt", host)
        let merged = CLI.temporaryPath("merged.trc")
        defer { try? FileManager.default.removeItem(atPath: merged) }
        let r = try CLI.run(["align", CLI.fixture("hello"), h, "--base", "100000000000", "--tid", "4021", "--out", merged])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("to userspace (L0): 1"), r.stdout)
        XCTAssertTrue(r.stdout.contains("handled in the kernel: 1"), r.stdout)
        XCTAssertTrue(r.stdout.contains("\nCPUID       1  500 ns  500 ns\n"), r.stdout)
        let summary = try CLI.run(["summary", merged, "--handler", "kernel"])
        XCTAssertEqual(summary.status, 0, summary.stderr)
        XCTAssertTrue(summary.stdout.contains("L1     CPUID   kernel       1  100.00  500 ns"), summary.stdout)
        XCTAssertEqual(try TraceReader(path: merged).count, try TraceReader(path: CLI.packageRoot.appendingPathComponent(CLI.fixture("hello")).path).count + 1)
    }

    func testErrors() throws {
        let h = file("host.txt", host)
        let t = CLI.fixture("hello")
        let cases: [([String], String)] = [
            (["align", t, h], "no monotonic_base_ns in the metadata (older traces and runs that never started lack it): give --base NS"),
            (["align", t, h, "--base", "1"], "no vcpu0_tid in the metadata: give --tid TID"),
            (["align", t, "/nonexistent/host.txt", "--base", "1", "--tid", "1"], "/nonexistent/host.txt: No such file or directory"),
            (["align", t, file("bad.txt", "x-1 [000] 1.5: kvm_exit: vcpu 0\n"), "--base", "1", "--tid", "1"], "line 1: kvm_exit without a reason"),
            (["align", t, file("none.txt", "nothing here\n"), "--base", "1", "--tid", "1"], "no kvm_exit (or kvm_cpuid, kvm_msr, ...) events"),
            (["align", t, h, "--base", "1", "--tid", "1", "--out", h], "is an input; refusing to overwrite it"),
        ]
        for (args, message) in cases {
            let r = try CLI.run(args)
            XCTAssertEqual(r.status, 1, "\(args)")
            XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        // A metadata value that is not a number.
        let bad = CLI.temporaryPath("bad-meta.trc")
        let w = try TraceWriter(path: bad, metadata: TraceMetadata([(TraceMetadata.monotonicBaseKey, "soon")]))
        try w.finish()
        let r = try CLI.run(["align", bad, h])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("metadata monotonic_base_ns='soon' is not a number"), r.stderr)
    }
}
