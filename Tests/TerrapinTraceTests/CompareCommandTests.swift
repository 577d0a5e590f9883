import Foundation
import XCTest

/// `compare` on the real fixtures: its JSON structure, A/A quietness,
/// several runs per side, and its option errors.
final class CompareCommandTests: XCTestCase {
    private func json(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let r = try CLI.run(["compare"] + arguments + ["--json"])
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], file: file, line: line)
    }

    func testJSONIsStructured() throws {
        let o = try json([CLI.fixture("turtle-pio-storm"), CLI.fixture("turtle-pio-storm-io-all")])
        let settings = try XCTUnwrap(o["settings"] as? [String: Any])
        XCTAssertEqual(settings["threshold"] as? Double, 0.1)
        XCTAssertEqual(settings["run_noise"] as? Double, 0.2, "one run per side")
        XCTAssertEqual(settings["min_count"] as? Int, 50)
        XCTAssertEqual(settings["blocks"] as? Int, 20)
        let tests = try XCTUnwrap(o["tests"] as? Int)
        XCTAssertEqual(try XCTUnwrap(o["per_test_confidence"] as? Double), 1 - 0.05 / Double(tests), accuracy: 1e-6)
        let rows = try XCTUnwrap(o["rows"] as? [[String: Any]])
        let vmread = try XCTUnwrap(rows.first { $0["reason"] as? String == "VMREAD" })
        let count = try XCTUnwrap(vmread["count"] as? [String: Any])
        XCTAssertEqual(count["a"] as? Int, 2468)
        let p50 = try XCTUnwrap(vmread["p50_ns"] as? [String: Any])
        let (a, b) = (try XCTUnwrap(p50["a"] as? Double), try XCTUnwrap(p50["b"] as? Double))
        XCTAssertEqual(try XCTUnwrap(p50["change"] as? Double), b / a - 1, accuracy: 1e-5)
        XCTAssertLessThanOrEqual(try XCTUnwrap(p50["change_low"] as? Double), try XCTUnwrap(p50["change_high"] as? Double))
        // A row with one exit per side: single-sided values, never flagged.
        let vmxon = try XCTUnwrap(rows.first { $0["reason"] as? String == "VMXON" })
        XCTAssertEqual(vmxon["enough_samples"] as? Bool, false)
        XCTAssertEqual(vmxon["flagged"] as? Bool, false)
        for r in rows {
            let flags = try XCTUnwrap(r["flags"] as? [String])
            XCTAssertEqual(r["flagged"] as? Bool, !flags.isEmpty)
        }
        let flagged = rows.filter { $0["flagged"] as? Bool == true }.count
        XCTAssertEqual(o["flagged_rows"] as? Int, flagged)
        let episodes = try XCTUnwrap(o["episodes"] as? [[String: Any]])
        XCTAssertEqual(episodes.count, 1)
        XCTAssertEqual(episodes[0]["reason"] as? String, "IO_INSTRUCTION")
        XCTAssertEqual((episodes[0]["exits_p50"] as? [String: Any])?["a"] as? Double, 7)
    }

    /// A trace against itself flags nothing, whatever the seed.
    func testATraceAgainstItselfFlagsNothing() throws {
        for name in ["turtle-pio-storm", "pio-storm", "nested"] {
            for seed in ["1", "7"] {
                let o = try json([CLI.fixture(name), CLI.fixture(name), "--seed", seed])
                XCTAssertEqual(o["flagged_rows"] as? Int, 0, "\(name) seed \(seed)")
                XCTAssertEqual(o["flagged_episodes"] as? Int, 0, "\(name) seed \(seed)")
            }
        }
    }

    /// I/O that turtle does not intercept (L0 handles it) against I/O it
    /// intercepts: the L2 rows that moved are flagged, as are the L1 exits
    /// the reflection costs.
    func testRealChangeIsFlagged() throws {
        let o = try json([CLI.fixture("pio-storm"), CLI.fixture("turtle-pio-storm")])
        let rows = try XCTUnwrap(o["rows"] as? [[String: Any]])
        func flags(_ level: Int, _ reason: String) -> [String]? {
            rows.first { $0["level"] as? Int == level && $0["reason"] as? String == reason }?["flags"] as? [String]
        }
        XCTAssertEqual(flags(2, "IO_INSTRUCTION"), ["new"])
        XCTAssertEqual(flags(1, "VMREAD"), ["new"])
        XCTAssertEqual(flags(1, "VMXON"), [], "one exit: too few to flag")
    }

    func testSeveralRunsPerSide() throws {
        let t = CLI.fixture("turtle-pio-storm")
        let o = try json([t, t, "--a-run", t, "--b-run", t, "--b-run", t])
        XCTAssertEqual((o["runs_a"] as? [String])?.count, 2)
        XCTAssertEqual((o["runs_b"] as? [String])?.count, 3)
        XCTAssertEqual(o["per"] as? String, "run")
        XCTAssertEqual((o["settings"] as? [String: Any])?["run_noise"] as? Double, 0, "several runs on both sides")
        let rows = try XCTUnwrap(o["rows"] as? [[String: Any]])
        let vmread = try XCTUnwrap(rows.first { $0["reason"] as? String == "VMREAD" }?["count"] as? [String: Any])
        XCTAssertEqual(vmread["a"] as? Int, 2 * 2468)
        XCTAssertEqual(vmread["norm_b"] as? Double, 2468, "counts per run")
        XCTAssertEqual(o["flagged_rows"] as? Int, 0)
    }

    /// The default unit is `iterations`, which a guest reports; a trace
    /// without it is named, and the comparison is not normalised.
    func testTheDefaultUnitIsTheReportedIterations() throws {
        let synthetic = try json([CLI.fixture("nested"), CLI.fixture("nested-small")])
        XCTAssertEqual(synthetic["per"] as? String, "iterations")
        XCTAssertEqual(synthetic["without_iterations"] as? [String], [])
        let (real, hello) = (CLI.fixture("pio-storm"), CLI.fixture("hello"))
        let mixed = try json([CLI.fixture("nested"), real])
        XCTAssertTrue(mixed["per"] is NSNull, "one side has no unit: not normalised")
        XCTAssertTrue(mixed["units_a"] is NSNull)
        XCTAssertEqual(mixed["without_iterations"] as? [String], [real])
        let text = try CLI.run(["compare", hello, real])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("not normalised"), text.stdout)
        XCTAssertTrue(text.stdout.contains("note: not per iteration: no 'iterations' in \(hello), \(real) (the guest reported no unit of work"),
                      text.stdout)
        // --per given: nothing to say about iterations.
        let cmdline = try json([hello, real, "--per", "none"])
        XCTAssertEqual(cmdline["without_iterations"] as? [String], [])
    }

    func testOptionErrors() throws {
        let t = CLI.fixture("nested-small")
        for (args, message) in [(["--threshold", "-5"], "--threshold must be a percentage >= 0"),
                                (["--threshold=-5"], "--threshold must be a percentage >= 0"),
                                (["--min-count", "0"], "--min-count must be at least 1"),
                                (["--run-noise", "-1"], "--run-noise must be a percentage >= 0"),
                                (["--blocks", "1"], "--blocks must be 2...1000"),
                                (["--confidence", "100"], "--confidence must be"),
                                (["--reason", "nosuch"], "unknown reason 'nosuch'")] {
            let r = try CLI.run(["compare", t, t] + args)
            XCTAssertEqual(r.status, 64, "\(args)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Missing value"), "\(args): \(r.stderr)")
        }
    }
}
