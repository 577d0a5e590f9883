import Foundation
import XCTest

/// Every command's text and JSON output on the fixtures in Traces/ must match
/// Golden/ byte for byte. `UPDATE_GOLDEN=1 swift test --filter GoldenTests`
/// rewrites the golden files instead (then review the diff).
final class GoldenTests: XCTestCase {
    static let golden = CLI.packageRoot.appendingPathComponent("Tests/TerrapinTraceTests/Golden")
    static let real = ["hello", "hlt-storm", "mmio-storm", "pio-storm", "vmx-selftest", "turtle-pio-storm"]
    static let nested = ["nested", "nested-shadow"]

    /// Compares `actual` with Golden/`name`, or rewrites it under UPDATE_GOLDEN=1.
    func check(_ name: String, _ actual: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let url = Self.golden.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try actual.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        guard let expected = try? String(contentsOf: url, encoding: .utf8) else {
            XCTFail("missing golden file \(name); run with UPDATE_GOLDEN=1", file: file, line: line)
            return
        }
        if expected != actual {
            let e = expected.split(separator: "\n", omittingEmptySubsequences: false)
            let a = actual.split(separator: "\n", omittingEmptySubsequences: false)
            let i = zip(e, a).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(e.count, a.count)
            XCTFail("\(name) differs at line \(i + 1):\n  expected: \(i < e.count ? String(e[i]) : "<end>")\n"
                    + "  actual:   \(i < a.count ? String(a[i]) : "<end>")", file: file, line: line)
        }
    }

    func output(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try CLI.run(arguments)
        XCTAssertEqual(r.status, 0, "\(arguments): \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr, "", file: file, line: line)
        return r.stdout
    }

    func testSummary() throws {
        for name in Self.real + Self.nested {
            try check("summary-\(name).txt", try output(["summary", CLI.fixture(name)]))
            try check("summary-\(name).json", try output(["summary", CLI.fixture(name), "--json"]))
        }
    }

    func testSlices() throws {
        let turtle = CLI.fixture("turtle-pio-storm")
        let byAddress = ["summary", turtle, "--by-address", "--top", "0"]
        try check("summary-turtle-pio-storm-by-address.txt", try output(byAddress))
        try check("summary-turtle-pio-storm-by-address.json", try output(byAddress + ["--json"]))
        try check("summary-mmio-storm-by-address.txt", try output(["summary", CLI.fixture("mmio-storm"), "--by-address"]))
        let window = ["summary", turtle, "--from", "320ms", "--to", "330ms", "--reason", "VMREAD,io-out"]
        try check("summary-turtle-pio-storm-window.txt", try output(window))
        let l1 = ["storms", CLI.fixture("nested"), "--episode-root", "EPT_VIOLATION", "--top", "3"]
        try check("storms-nested-ept-root.txt", try output(l1))
        try check("storms-nested-ept-root.json", try output(l1 + ["--json"]))
        try check("export-nested-small-l2.csv", try output(["export", CLI.fixture("nested-small"), "--format", "csv",
                                                            "--level", "2", "--handler", "reflected"]))
    }

    func testStorms() throws {
        for name in Self.real + Self.nested {
            try check("storms-\(name).txt", try output(["storms", CLI.fixture(name)]))
            try check("storms-\(name).json", try output(["storms", CLI.fixture(name), "--json"]))
        }
        let bursts = ["storms", CLI.fixture("nested"), "--window", "250us", "--threshold", "2x", "--top", "5"]
        try check("storms-nested-bursts.txt", try output(bursts))
        try check("storms-nested-bursts.json", try output(bursts + ["--json"]))
        let absolute = ["storms", CLI.fixture("pio-storm"), "--window", "500us", "--threshold", "100k"]
        try check("storms-pio-storm-100k.txt", try output(absolute))
    }

    func testCompare() throws {
        let nested = ["compare", CLI.fixture("nested"), CLI.fixture("nested-shadow")]
        try check("compare-nested-shadow.txt", try output(nested))
        try check("compare-nested-shadow.json", try output(nested + ["--json"]))
        let real = ["compare", CLI.fixture("pio-storm"), CLI.fixture("mmio-storm"), "--per", "cmdline", "--threshold", "25"]
        try check("compare-pio-mmio.txt", try output(real))
        try check("compare-pio-mmio.json", try output(real + ["--json"]))
        try check("compare-hello-hlt.txt", try output(["compare", CLI.fixture("hello"), CLI.fixture("hlt-storm")]))
        // A real nested comparison: turtle with I/O bitmaps against unconditional I/O exiting.
        let io = ["compare", CLI.fixture("turtle-pio-storm"), CLI.fixture("turtle-pio-storm-io-all")]
        try check("compare-turtle-io.txt", try output(io))
        try check("compare-turtle-io.json", try output(io + ["--json"]))
    }

    func testPlot() throws {
        for name in ["nested", "hlt-storm", "turtle-pio-storm"] {
            let svg = CLI.temporaryPath("\(name).svg")
            _ = try output(["plot", CLI.fixture(name), "--out", svg])
            try check("plot-\(name).svg", try String(contentsOfFile: svg, encoding: .utf8))
        }
    }

    func testExport() throws {
        let real = CLI.fixture("turtle-pio-storm")
        try check("export-turtle-pio-storm.csv", try output(["export", real, "--format", "csv"]))
        let small = CLI.fixture("nested-small")
        try check("export-nested-small.perfetto.json", try output(["export", small, "--format", "perfetto-json"]))
        try check("export-nested-small.csv", try output(["export", small, "--format", "csv"]))
        try check("export-nested-small.jsonl", try output(["export", small, "--format", "json"]))
    }
}
