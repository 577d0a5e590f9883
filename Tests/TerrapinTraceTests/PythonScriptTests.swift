import Foundation
import TraceFormat
import XCTest

/// The Python scripts: scripts/trace_numpy.py, the documented numpy reader
/// of the binary format, against `terrapin-trace export --format csv
/// --numeric`; and scripts/check_perfetto.py, which checks the Perfetto
/// export against the `perfetto` package's protobuf definitions. Python 3
/// with numpy and perfetto is required (scripts/python-deps installs them):
/// without it these tests fail rather than skip, since CI has Python.
final class PythonScriptTests: XCTestCase {
    /// Runs `executable` (looked up on PATH) with `arguments` from the package root.
    private func run(_ executable: String, _ arguments: [String]) throws -> CLI.Result {
        try CLI.run(URL(fileURLWithPath: "/usr/bin/env"), [executable] + arguments)
    }

    override func setUpWithError() throws {
        let python = try run("python3", ["--version"])
        guard python.status == 0 else {
            XCTFail("python3 is required for the numpy reader tests: \(python.stderr)")
            throw XCTSkip("not reached: the failure above is the outcome")
        }
        let deps = try run("scripts/python-deps", ["numpy", "perfetto"])
        guard deps.status == 0 else {
            XCTFail("numpy and perfetto could not be set up by scripts/python-deps: \(deps.stderr)")
            throw XCTSkip("not reached: the failure above is the outcome")
        }
    }

    /// The numeric CSV without its `reason` column (column 9), which the reader leaves out.
    private func exportWithoutReason(_ trace: String) throws -> String {
        let r = try CLI.run(["export", trace, "--format", "csv", "--numeric"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            var c = line.split(separator: ",", omittingEmptySubsequences: false)
            if c.count > 8 { c.remove(at: 8) }
            return c.joined(separator: ",")
        }.joined(separator: "\n")
    }

    func testReaderAgreesWithTheCSVExportOnEveryFixture() throws {
        for name in ["hello", "pio-storm", "vmx-selftest", "turtle-pio-storm", "nested", "nested-shadow"] {
            let trace = CLI.fixture(name)
            let py = try run("python3", ["scripts/trace_numpy.py", trace, "--csv"])
            XCTAssertEqual(py.status, 0, py.stderr)
            XCTAssertGreaterThan(py.stdout.count, 100, name)
            XCTAssertEqual(py.stdout, try exportWithoutReason(trace), name)
        }
    }

    func testReaderAgreesOnExtremeFieldsAndAnUnfinishedTrace() throws {
        let p = CLI.temporaryPath("extreme.trc")
        defer { try? FileManager.default.removeItem(atPath: p) }
        let w = try TraceWriter(path: p, metadata: TraceMetadata([("command", "a=b=c"), ("x", "")]), batchRecords: 2)
        let values: [UInt64] = [0, 1, 0xFF, 0xFFFF_FFFF, 1 << 63, .max]
        for (i, v) in values.enumerated() {
            w.append(TraceRecord(timestamp: v, duration: UInt32(truncatingIfNeeded: v), level: UInt8(truncatingIfNeeded: v),
                                 kind: ExitKind(rawValue: UInt8(truncatingIfNeeded: v)), vcpu: UInt16(truncatingIfNeeded: v),
                                 rip: v, address: ~v, value: v &* 3, episode: v, vmxReason: UInt32(truncatingIfNeeded: v),
                                 handler: Handler(rawValue: UInt8(i)), size: UInt8(truncatingIfNeeded: v),
                                 flags: RecordFlags(rawValue: UInt8(truncatingIfNeeded: v))))
        }
        // Never finished: the count stays unfinished and the reader derives it from the size.
        let py = try run("python3", ["scripts/trace_numpy.py", p, "--csv"])
        XCTAssertEqual(py.status, 0, py.stderr)
        XCTAssertEqual(py.stdout.split(separator: "\n").count, 1 + 6)
        XCTAssertEqual(py.stdout, try exportWithoutReason(p))
        let info = try run("python3", ["scripts/trace_numpy.py", p])
        XCTAssertTrue(info.stdout.contains("unfinished"), info.stdout)
        XCTAssertTrue(info.stdout.contains("command: a=b=c"), info.stdout)
        _ = w
    }

    func testBadInputGivesTheToolsError() throws {
        for (name, bytes) in [("text.trc", Array("hello, world\n".utf8)), ("short.trc", Array("TRPNTRAC\u{1}".utf8))] {
            let p = CLI.temporaryPath(name)
            defer { try? FileManager.default.removeItem(atPath: p) }
            _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
            let py = try run("python3", ["scripts/trace_numpy.py", p])
            let tool = try CLI.run(["summary", p])
            XCTAssertEqual(py.status, 1, name)
            XCTAssertEqual(tool.status, 1, name)
            XCTAssertEqual(py.stderr, tool.stderr, name)
        }
    }

    func testPerfettoExportPassesThePerfettoPackageCheck() throws {
        for name in ["hello", "hlt-storm", "turtle-pio-storm", "nested", "nested-shadow", "vmx-selftest"] {
            for (lean, uncompressed) in [(false, false), (true, false), (false, true)] {
                let out = CLI.temporaryPath("\(name).pftrace")
                defer { try? FileManager.default.removeItem(atPath: out) }
                let export = try CLI.run(["export", CLI.fixture(name), "--format", "perfetto", "--out", out]
                                         + (lean ? ["--no-annotations"] : []) + (uncompressed ? ["--uncompressed"] : []))
                XCTAssertEqual(export.status, 0, export.stderr)
                let check = try run("python3", ["scripts/check_perfetto.py", CLI.fixture(name), out])
                XCTAssertEqual(check.status, 0, "\(name): \(check.stdout)\(check.stderr)")
                XCTAssertTrue(check.stdout.hasPrefix("check_perfetto: ok"), check.stdout)
                // The default is compressed packets, which the check inflates.
                XCTAssertEqual(check.stdout.contains("(0 compressed packets)"), uncompressed, check.stdout)
            }
        }
    }

    func testPerfettoCheckCatchesADamagedExport() throws {
        let out = CLI.temporaryPath("damaged.pftrace")
        defer { try? FileManager.default.removeItem(atPath: out) }
        XCTAssertEqual(try CLI.run(["export", CLI.fixture("nested-small"), "--format", "perfetto", "--uncompressed",
                                    "--out", out]).status, 0)
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: out))
        bytes.removeLast(40)   // the last slices' END packets, cut
        try bytes.write(to: URL(fileURLWithPath: out))
        let check = try run("python3", ["scripts/check_perfetto.py", CLI.fixture("nested-small"), out])
        XCTAssertEqual(check.status, 1, check.stdout)

        // A compressed export with a byte of its zlib stream changed.
        XCTAssertEqual(try CLI.run(["export", CLI.fixture("nested-small"), "--format", "perfetto", "--out", out]).status, 0)
        var packed = try XCTUnwrap(FileManager.default.contents(atPath: out))
        packed[packed.count / 2] ^= 0x5A
        try packed.write(to: URL(fileURLWithPath: out))
        let damaged = try run("python3", ["scripts/check_perfetto.py", CLI.fixture("nested-small"), out])
        XCTAssertEqual(damaged.status, 1, damaged.stdout)
        XCTAssertTrue(damaged.stdout.contains("does not inflate"), damaged.stdout)
    }
}
