import Foundation
import XCTest

/// Every command rejects a damaged trace with "error: FILE: byte N: ..." and status 1.
final class BadInputTests: XCTestCase {
    var valid: [UInt8] = []

    override func setUpWithError() throws {
        valid = [UInt8](try XCTUnwrap(FileManager.default.contents(
            atPath: CLI.packageRoot.appendingPathComponent(CLI.fixture("nested-small")).path)))
    }

    private func store(_ bytes: [UInt8], _ name: String) -> String {
        let p = CLI.temporaryPath(name)
        _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    /// (file, expected "byte N: message" fragment)
    private var damaged: [(String, String)] {
        var version = valid
        version[8] = 9
        var count = valid
        count[16] = 0xFF
        count[17] = 0x7F
        return [
            (store([], "empty.trc"), "byte 0: empty file"),
            (store(Array("time,kind\n1,io-out\n".utf8), "text.csv"), "byte 0: not a Terrapin trace (bad magic)"),
            (store(Array(valid.prefix(20)), "short.trc"), "byte 20: truncated header"),
            (store(version, "version.trc"), "byte 8: unknown version 9"),
            (store(count, "count.trc"), "byte 16: header says"),
            (store(Array(valid.dropLast(10)), "torn.trc"), "byte 16: header says"),
        ]
    }

    /// An output that is the input (by any name) is refused, and the input
    /// stays as it was; an output that fails leaves no half-written file.
    func testAnOutputThatIsTheInputIsRefused() throws {
        let trace = store(valid, "self.trc")
        let link = CLI.temporaryPath("self-link.trc")
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: trace)
        for args in [["export", trace, "--format", "csv", "--out", trace], ["export", trace, "--format", "perfetto", "--out", link],
                     ["plot", trace, "--out", trace], ["plot", link, "--out", trace]] {
            let r = try CLI.run(args)
            XCTAssertEqual(r.status, 1, "\(args)")
            XCTAssertTrue(r.stderr.contains("refusing to overwrite it"), r.stderr)
        }
        XCTAssertEqual([UInt8](try XCTUnwrap(FileManager.default.contents(atPath: trace))), valid, "the input is intact")
        // A new output appears whole, with no temporary file left beside it.
        let csv = CLI.temporaryPath("out.csv")
        try? FileManager.default.removeItem(atPath: csv)
        XCTAssertEqual(try CLI.run(["export", trace, "--format", "csv", "--out", csv]).status, 0)
        XCTAssertTrue(try String(contentsOfFile: csv, encoding: .utf8).hasPrefix("record,"))
        let siblings = try FileManager.default.contentsOfDirectory(atPath: (csv as NSString).deletingLastPathComponent)
        XCTAssertFalse(siblings.contains { $0.hasPrefix("out.csv.tmp-") }, "\(siblings)")
    }

    func testEveryCommandRejectsDamagedTraces() throws {
        let good = CLI.fixture("nested-small")
        for (path, fragment) in damaged {
            let svg = CLI.temporaryPath("x.svg")
            for args in [["summary", path], ["storms", path], ["storms", path, "--json"], ["compare", path, good],
                         ["compare", good, path], ["plot", path, "--out", svg], ["export", path, "--format", "perfetto"],
                         ["export", path, "--format", "csv"]] {
                let r = try CLI.run(args)
                XCTAssertEqual(r.status, 1, "\(args): \(r.stderr)")
                XCTAssertTrue(r.stderr.hasPrefix("error: \(path): \(fragment)"), "\(args): \(r.stderr)")
                XCTAssertEqual(r.stdout, "", "\(args)")
            }
        }
    }

    func testMissingFileAndDirectory() throws {
        let r = try CLI.run(["storms", "/nonexistent/x.trc"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("/nonexistent/x.trc: cannot open"), r.stderr)
        let d = try CLI.run(["compare", "Traces", CLI.fixture("nested")])
        XCTAssertEqual(d.status, 1)
        XCTAssertTrue(d.stderr.contains("Traces: not a regular file"), d.stderr)
    }

    func testBadOptions() throws {
        let t = CLI.fixture("nested-small")
        for args in [["storms", t, "--window", "0"], ["storms", t, "--window", "fast"], ["storms", t, "--threshold", "lots"],
                     ["compare", t, t, "--threshold", "-1"], ["export", t, "--format", "xml"], ["plot", t],
                     ["plot", t, "--out", "/tmp/x.svg", "--bins", "0"]] {
            let r = try CLI.run(args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains("Error") || r.stderr.contains("error"), "\(args): \(r.stderr)")
        }
        let missing = try CLI.run(["compare", t, t, "--per", "nosuchkey"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("no number under 'nosuchkey'"), missing.stderr)
        let unwritable = try CLI.run(["export", t, "--format", "csv", "--out", "/nonexistent/dir/x.csv"])
        XCTAssertEqual(unwritable.status, 1)
        XCTAssertTrue(unwritable.stderr.contains("/nonexistent/dir/x.csv: cannot create"), unwritable.stderr)
        let numeric = try CLI.run(["export", t, "--format", "perfetto", "--numeric"])
        XCTAssertEqual(numeric.status, 64)
        XCTAssertTrue(numeric.stderr.contains("--numeric applies to --format csv and json only"), numeric.stderr)
        let uncompressed = try CLI.run(["export", t, "--format", "perfetto-json", "--uncompressed"])
        XCTAssertEqual(uncompressed.status, 64)
        XCTAssertTrue(uncompressed.stderr.contains("--uncompressed applies to --format perfetto only"), uncompressed.stderr)
    }
}
