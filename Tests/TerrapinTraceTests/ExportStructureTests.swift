import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import TraceFormat
import XCTest

/// The exports of every fixture, checked for structure rather than bytes.
final class ExportStructureTests: XCTestCase {
    static let fixtures = ["hello", "hlt-storm", "mmio-storm", "pio-storm", "nested", "nested-shadow", "nested-small"]

    func testPerfettoTracksNeverOverlapPartially() throws {
        for name in Self.fixtures {
            let r = try CLI.run(["export", CLI.fixture(name), "--format", "perfetto-json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], name)
            let events = try XCTUnwrap(root["traceEvents"] as? [[String: Any]], name)
            var slices: [Int: [(ts: Double, end: Double)]] = [:]
            var named = Set<Int>(), episodes = 0, exits = 0
            for e in events {
                let ph = try XCTUnwrap(e["ph"] as? String)
                XCTAssertEqual(e["pid"] as? Int, 1)
                let tid = try XCTUnwrap(e["tid"] as? Int)
                switch ph {
                case "M": if e["name"] as? String == "thread_name" { named.insert(tid) }
                case "X":
                    let ts = try XCTUnwrap(e["ts"] as? Double), dur = try XCTUnwrap(e["dur"] as? Double)
                    XCTAssertGreaterThanOrEqual(dur, 0)
                    slices[tid, default: []].append((ts, ts + dur))
                    if e["cat"] as? String == "episode" { episodes += 1 } else { exits += 1 }
                case "i": XCTAssertEqual(e["s"] as? String, "t")
                default: XCTFail("unexpected phase \(ph) in \(name)")
                }
            }
            XCTAssertTrue(Set(slices.keys).isSubset(of: named), "\(name): every track is named")
            // Sorted by start, longer first: each slice must nest in the innermost open one or follow it.
            for (tid, list) in slices {
                var open: [Double] = []
                for s in list.sorted(by: { ($0.ts, -$0.end) < ($1.ts, -$1.end) }) {
                    while let top = open.last, top <= s.ts + 1e-9 { open.removeLast() }
                    if let top = open.last {
                        XCTAssertLessThanOrEqual(s.end, top + 1e-9, "\(name) tid \(tid): slice at \(s.ts) overlaps its parent")
                    }
                    open.append(s.end)
                }
            }
            let reader = try TraceReader(path: CLI.packageRoot.appendingPathComponent(CLI.fixture(name)).path)
            let analysis = EpisodeAnalysis(reader)
            XCTAssertEqual(episodes, analysis.episodes.count, name)
            XCTAssertEqual(UInt64(exits), analysis.totalExits, name)
        }
    }

    func testCSVAndJSONLinesHaveOneEntryPerRecord() throws {
        for name in ["hello", "nested"] {
            let reader = try TraceReader(path: CLI.packageRoot.appendingPathComponent(CLI.fixture(name)).path)
            let csv = try CLI.run(["export", CLI.fixture(name), "--format", "csv"])
            XCTAssertEqual(csv.status, 0, csv.stderr)
            let rows = csv.stdout.split(separator: "\n")
            XCTAssertEqual(rows.count, reader.recordCount + 1)
            XCTAssertEqual(String(rows[0]), RecordExport.csvHeader)
            let columns = RecordExport.csvHeader.split(separator: ",").count
            XCTAssertTrue(rows.allSatisfy { $0.split(separator: ",", omittingEmptySubsequences: false).count == columns })

            let out = CLI.temporaryPath("\(name).jsonl")
            let json = try CLI.run(["export", CLI.fixture(name), "--format", "json", "--out", out])
            XCTAssertEqual(json.status, 0, json.stderr)
            XCTAssertEqual(json.stdout, "")
            let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(lines.count, reader.recordCount)
            for (i, line) in lines.enumerated() where i % 97 == 0 {
                let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                XCTAssertEqual(o["record"] as? Int, i)
                XCTAssertEqual(o["timestamp_ns"] as? UInt64, reader[i].timestamp)
            }
        }
    }

    func testJSONOutputsParse() throws {
        for args in [["summary", CLI.fixture("nested"), "--json"], ["storms", CLI.fixture("nested"), "--json"],
                     ["storms", CLI.fixture("hello"), "--json"],
                     ["compare", CLI.fixture("nested"), CLI.fixture("nested-shadow"), "--json"]] {
            let r = try CLI.run(args)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(args)")
        }
    }

    func testPlotIsWellFormedSVG() throws {
        // The time unit follows the span: pio-storm runs 30 ms, the synthetic nested trace under 10 ms.
        for (name, unit) in [("pio-storm", "ms"), ("nested", "µs")] {
            let out = CLI.temporaryPath("\(name).svg")
            let r = try CLI.run(["plot", CLI.fixture(name), "--out", out])
            XCTAssertEqual(r.status, 0, r.stderr)
            let doc = try XMLDocument(contentsOf: URL(fileURLWithPath: out))
            XCTAssertEqual(doc.rootElement()?.name, "svg")
            let text = try String(contentsOfFile: out, encoding: .utf8)
            for label in ["exits/s", "time since run start (\(unit))", "exits (log scale)", "level, reason (exits)"] {
                XCTAssertTrue(text.contains(label), "\(name): no \(label)")
            }
        }
    }

    func testGenerateIsDeterministicAndHidden() throws {
        let a = CLI.temporaryPath("a.trc"), b = CLI.temporaryPath("b.trc")
        for p in [a, b] {
            let r = try CLI.run(["generate", "--records", "777", "--seed", "9", "--out", p])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        XCTAssertEqual(FileManager.default.contents(atPath: a), FileManager.default.contents(atPath: b))
        XCTAssertEqual(try TraceReader(path: a).recordCount, 777)
        let help = try CLI.run(["--help"])
        XCTAssertFalse(help.stdout.contains("generate"), help.stdout)
        for command in ["summary", "storms", "compare", "plot", "export"] {
            XCTAssertTrue(help.stdout.contains(command), "help lacks \(command)")
        }
    }
}
