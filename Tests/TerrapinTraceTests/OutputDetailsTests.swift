import Foundation
import TraceFormat
import XCTest

/// Item 6 of issue 14: units, sorting, --version and the plot's title, axis and standard output.
final class OutputDetailsTests: XCTestCase {
    /// A trace whose command is `command` and whose exits span `seconds`.
    private func trace(command: String, seconds: UInt64) throws -> String {
        let p = CLI.temporaryPath("long.trc")
        let w = try TraceWriter(path: p, metadata: TraceMetadata([("command", command)]))
        for i in 0...100 {
            w.append(TraceRecord(timestamp: UInt64(i) * seconds * 10_000_000, duration: 500, kind: .ioOut))
        }
        try w.finish()
        return p
    }

    func testPlotWrapsTheTitleAndPicksTheTimeUnit() throws {
        let command = (0..<60).map { "--option\($0) value" }.joined(separator: " ")
        let p = try trace(command: command, seconds: 182)
        let r = try CLI.run(["plot", p, "--out", "-"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("<?xml"), "the SVG goes to standard output")
        XCTAssertFalse(FileManager.default.fileExists(atPath: CLI.packageRoot.appendingPathComponent("-").path))
        let titles = r.stdout.split(separator: "\n").filter { $0.contains("font-size=\"16\"") }
        XCTAssertEqual(titles.count, 2, "two title lines")
        for t in titles {
            let text = t.split(separator: ">", maxSplits: 1)[1].split(separator: "<")[0]
            XCTAssertLessThanOrEqual(text.count, 105)
        }
        XCTAssertTrue(titles[1].hasSuffix("…</text>"), String(titles[1]))
        XCTAssertTrue(r.stdout.contains("time since run start (s)"))
        let short = try CLI.run(["plot", try trace(command: "short", seconds: 0), "--out", "-"])
        XCTAssertTrue(short.stdout.contains("time since run start (ns)") || short.stdout.contains("time since run start (µs)"),
                      "a 0 s span is not shown in ms")
    }

    /// The plot's per-reason histograms: one panel for each of the six most
    /// frequent (level, reason) pairs, whose bars add up to its exits, each
    /// bar in the bucket of its handling times.
    func testPlotHasAHandlingTimeHistogramPerReason() throws {
        let fixture = CLI.fixture("turtle-pio-storm")
        let r = try CLI.run(["plot", fixture, "--out", "-"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var counts: [String: Int] = [:], buckets: [String: [Int: Int]] = [:]
        for rec in try TraceReader(path: CLI.packageRoot.appendingPathComponent(fixture).path) where !rec.kind.isEvent {
            let key = "L\(rec.level) \(ExitReason(rec).name)"
            counts[key, default: 0] += 1
            buckets[key, default: [:]][64 - UInt64(rec.duration).leadingZeroBitCount, default: 0] += 1
        }
        let top = counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(6)
        XCTAssertTrue(r.stdout.contains("Handling time per exit, by level and reason"))
        // Bar titles "L1 VMREAD 16.4 µs: 12" (the per-level histogram's read "L1 16.4 µs: 12").
        let titles = r.stdout.components(separatedBy: "<title>").dropFirst().map { $0.components(separatedBy: "</title>")[0] }
        for (key, count) in top {
            XCTAssertTrue(r.stdout.contains(">\(key) (\(count))</text>"), "a panel for \(key)")
            let bars = titles.filter { $0.hasPrefix(key + " ") && $0.contains(": ") }
            let values = bars.compactMap { Int($0.components(separatedBy: ": ").last ?? "") }
            XCTAssertEqual(values.reduce(0, +), count, key)
            XCTAssertEqual(bars.count, buckets[key]?.count, "\(key): one bar per used power-of-two bucket")
        }
        let others = Set(counts.keys).subtracting(top.map(\.key))
        XCTAssertFalse(others.contains { key in titles.contains { $0.hasPrefix(key + " ") && !$0.hasPrefix(key + " (") } },
                       "no panel beyond the six most frequent")
    }

    func testSubMicrosecondTimesAreShownInNanoseconds() throws {
        let r = try CLI.run(["summary", CLI.fixture("turtle-pio-storm")])
        let io = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("L1     io-in") })
        XCTAssertTrue(io.contains(" 61 ns"), String(io))
        XCTAssertTrue(r.stdout.contains("stddev") && r.stdout.contains("min"))
    }

    func testSortAndVersion() throws {
        let r = try CLI.run(["summary", CLI.fixture("turtle-pio-storm"), "--sort", "count", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let counts = try XCTUnwrap(o["groups"] as? [[String: Any]]).compactMap { $0["count"] as? Int }
        XCTAssertEqual(counts, counts.sorted(by: >))
        XCTAssertEqual(counts.first, 2468)
        let g = try XCTUnwrap((o["groups"] as? [[String: Any]])?.first)
        XCTAssertEqual(g["min_ns"] as? Int, 531)
        XCTAssertNotNil(g["stddev_ns"] as? Double)
        let bad = try CLI.run(["summary", CLI.fixture("turtle-pio-storm"), "--sort", "speed"])
        XCTAssertEqual(bad.status, 64)
        XCTAssertTrue(bad.stderr.contains("speed"), bad.stderr)
        let v = try CLI.run(["--version"])
        XCTAssertEqual(v.status, 0)
        XCTAssertEqual(v.stdout, "terrapin-trace 1.1 (trace format version 1)\n")
    }
}
