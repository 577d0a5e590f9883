import Foundation
import XCTest

/// The filters every command takes, checked against the CSV export.
final class FilterCommandTests: XCTestCase {
    /// The CSV rows of `trace` (header dropped), split into fields.
    private func csv(_ trace: String, _ filter: [String] = []) throws -> [[Substring]] {
        let r = try CLI.run(["export", trace, "--format", "csv"] + filter)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false) }
    }

    private func json(_ arguments: [String]) throws -> [String: Any] {
        let r = try CLI.run(arguments + ["--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    }

    func testEveryFilterAgreesWithTheRecords() throws {
        let t = CLI.fixture("nested")
        let all = try csv(t)
        // CSV columns: record,timestamp_ns,duration_ns,level,vcpu,kind,kind_code,vmx_reason,reason,handler,episode,...
        let cases: [([String], ([Substring]) -> Bool)] = [
            (["--level", "2"], { $0[3] == "2" }),
            (["--level", "L1,L3"], { $0[3] == "1" || $0[3] == "3" }),
            (["--reason", "VMREAD,EPT_VIOLATION"], { $0[8] == "VMREAD" || $0[8] == "EPT_VIOLATION" }),
            (["--handler", "reflected"], { $0[9] == "reflected" }),
            (["--from", "1ms", "--to", "2ms"], { Int($0[1])! >= 1_000_000 && Int($0[1])! < 2_000_000 }),
        ]
        for (filter, keep) in cases {
            let expected = all.filter(keep).count
            XCTAssertGreaterThan(expected, 0, "\(filter)")
            XCTAssertLessThan(expected, all.count, "\(filter)")
            XCTAssertEqual(try csv(t, filter).count, expected, "\(filter)")
            let summary = try json(["summary", t] + filter)
            XCTAssertEqual(summary["records"] as? Int, expected, "\(filter)")
            let selection = try XCTUnwrap(summary["selection"] as? [String: Any])
            XCTAssertEqual(selection["of"] as? Int, all.count)
            XCTAssertEqual(try json(["storms", t] + filter)["records"] as? Int, expected, "\(filter)")
        }
        // One vCPU in this trace.
        XCTAssertEqual(try csv(t, ["--vcpu", "0"]).count, all.count)
        XCTAssertEqual(try csv(t, ["--vcpu", "1,2"]).count, 0)
        XCTAssertEqual(try json(["summary", t, "--vcpu", "1"])["records"] as? Int, 0)
        // --episode-root keeps whole episodes: their roots and the L1 exits they cost.
        let roots = Set(all.filter { $0[9] == "reflected" && $0[8] == "EPT_VIOLATION" }.map { $0[10] })
        let kept = try csv(t, ["--episode-root", "EPT_VIOLATION"])
        XCTAssertEqual(kept.count, all.filter { roots.contains($0[10]) }.count)
        XCTAssertTrue(kept.contains { $0[3] == "1" })
        let storms = try json(["storms", t, "--episode-root", "EPT_VIOLATION"])
        XCTAssertEqual(storms["episodes"] as? Int, roots.count)
        XCTAssertEqual((storms["roots"] as? [[String: Any]])?.map { $0["reason"] as? String }, ["EPT_VIOLATION"])
    }

    func testCompareAndPlotTakeFilters() throws {
        let t = CLI.fixture("turtle-pio-storm")
        let o = try json(["compare", t, CLI.fixture("turtle-pio-storm-io-all"), "--level", "2"])
        XCTAssertEqual((o["rows"] as? [[String: Any]])?.compactMap { $0["level"] as? Int }, [2])
        let svg = CLI.temporaryPath("f.svg")
        let r = try CLI.run(["plot", t, "--out", svg, "--reason", "VMREAD"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let text = try String(contentsOfFile: svg, encoding: .utf8)
        XCTAssertTrue(text.contains("L1 VMREAD (2468)"))
        XCTAssertFalse(text.contains("IO_INSTRUCTION ("))
    }

    func testBadFilters() throws {
        let t = CLI.fixture("nested-small")
        for (args, message) in [(["--level", "0"], "--level: '0' is not a level"),
                                (["--reason", "VMREAD,bogus"], "--reason: unknown reason 'bogus'"),
                                (["--handler", "l2"], "--handler: 'l2' is not a handler"),
                                (["--vcpu", "-1"], "--vcpu: '-1' is not a vCPU index"),
                                (["--from", "soon"], "--from 'soon' is not a time"),
                                (["--from", "2ms", "--to", "1ms"], "--from must be before --to"),
                                (["--episode-root", ""], "--episode-root needs at least one reason")] {
            for command in [["summary", t], ["storms", t], ["export", t, "--format", "csv"]] {
                let r = try CLI.run(command + args)
                XCTAssertEqual(r.status, 64, "\(command) \(args)")
                XCTAssertTrue(r.stderr.contains(message), "\(command) \(args): \(r.stderr)")
            }
        }
    }
}
