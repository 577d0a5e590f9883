import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import TraceFormat
import XCTest

/// Traces that are well formed but hostile: extreme timestamps and control
/// characters in the metadata. Every command finishes, bounded, with output
/// a consumer can parse (valid XML for `plot`).
final class HostileTraceTests: XCTestCase {
    func write(_ name: String, metadata: TraceMetadata = TraceMetadata([("command", "terrapin run x")]),
               timestamps: [UInt64]) throws -> String {
        let path = CLI.temporaryPath(name)
        let writer = try TraceWriter(path: path, metadata: metadata)
        for t in timestamps { writer.append(TraceRecord(timestamp: t, duration: 100, kind: .ioOut, address: 0x80)) }
        try writer.finish()
        return path
    }

    func assertValidSVG(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let doc = try XMLDocument(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(doc.rootElement()?.name, "svg", file: file, line: line)
    }

    func testExtremeTimestampsPlotAndSummarise() throws {
        for (name, stamps) in [("wide.trc", [0, UInt64.max]), ("late.trc", [UInt64](repeating: 2_000_000_000_000_000_000, count: 3)),
                               ("latest.trc", [UInt64.max, UInt64.max])] {
            let trace = try write(name, timestamps: stamps)
            let svg = CLI.temporaryPath(name + ".svg")
            for bins in ["1", "120", "10000"] {
                let r = try CLI.run(["plot", trace, "--out", svg, "--bins", bins])
                XCTAssertEqual(r.status, 0, "\(name), \(bins) bins: \(r.stderr)")
                try assertValidSVG(svg)
            }
            for args in [["summary", trace], ["storms", trace], ["compare", trace, trace], ["export", trace, "--format", "perfetto"],
                         ["export", trace, "--format", "perfetto-json"]] {
                XCTAssertEqual(try CLI.run(args).status, 0, "\(args)")
            }
        }
    }

    func testControlCharactersInMetadataAreEscapedEverywhere() throws {
        let evil = "run \u{1}\u{1b}[31m<b>&\"\u{7f}\u{9b}end"
        let trace = try write("evil.trc", metadata: TraceMetadata([("command", evil), ("note\u{1b}", "x")]), timestamps: [1, 2, 3])
        let svg = CLI.temporaryPath("evil.svg")
        XCTAssertEqual(try CLI.run(["plot", trace, "--out", svg]).status, 0)
        try assertValidSVG(svg)
        for args in [["summary", trace], ["storms", trace], ["compare", trace, trace]] {
            let r = try CLI.run(args)
            XCTAssertEqual(r.status, 0, "\(args)")
            XCTAssertFalse(r.stdout.unicodeScalars.contains { $0.value == 0x1b || $0.value == 0x1 || $0.value == 0x9b }, "\(args): \(r.stdout)")
        }
        for args in [["summary", trace, "--json"], ["export", trace, "--format", "json"], ["export", trace, "--format", "perfetto-json"]] {
            let r = try CLI.run(args)
            XCTAssertEqual(r.status, 0, "\(args)")
            for line in r.stdout.split(separator: "\n") where args.contains("json") && args.contains("export") {
                XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(line.utf8)), String(line))
            }
            if !args.contains("json") || args.contains("summary") {
                XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)), "\(args)")
            }
        }
    }
}
