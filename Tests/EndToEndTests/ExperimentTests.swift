import Foundation
import XCTest

/// `terrapin experiment paging` (docs/SHADOW.md) in its fast mode: every
/// workload in every paging mode once, its JSON checked for structure and
/// sane values, and the two results that do not depend on noise.
final class ExperimentTests: XCTestCase {
    override func setUpWithError() throws { try Harness.prepare() }

    func testThePagingExperimentRunsEveryWorkloadInEveryMode() throws {
        let out = Harness.temporaryPath("experiment-paging")
        let r = try Harness.terrapin(["experiment", "paging", "--fast", "--rounds", "1", "--out", out, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        XCTAssertEqual(json["modes"] as? [String], ["ept", "shadow", "identity", "ept-scatter", "ept-scatter-eager"])
        let rows = try XCTUnwrap(json["rows"] as? [[String: Any]])
        XCTAssertEqual(rows.count, 9)
        var ratios: [String: Double] = [:]
        for row in rows {
            let name = try XCTUnwrap(row["name"] as? String)
            let modes = try XCTUnwrap(row["modes"] as? [String: [String: Double]], name)
            for mode in ["ept", "shadow", "identity", "ept-scatter", "ept-scatter-eager"] {
                let e = try XCTUnwrap(modes[mode], "\(name) \(mode)")
                XCTAssertGreaterThan(e["median"] ?? 0, 0, "\(name) \(mode)")
                XCTAssertLessThanOrEqual(e["low"] ?? .infinity, e["median"] ?? 0)
                XCTAssertGreaterThanOrEqual(e["high"] ?? 0, e["median"] ?? .infinity)
            }
            let ratio = try XCTUnwrap(row["shadow_over_ept"] as? [String: Double], name)
            XCTAssertLessThanOrEqual(ratio["low"] ?? .infinity, ratio["ratio"] ?? 0, name)
            XCTAssertGreaterThanOrEqual(ratio["high"] ?? 0, ratio["ratio"] ?? .infinity, name)
            XCTAssertNotNil(row["eager_over_lazy"] as? [String: Double], name)
            ratios[name] = ratio["ratio"]
        }
        let runs = try XCTUnwrap(json["runs"] as? [[String: Any]])
        XCTAssertEqual(runs.count, 7 * 5)
        for run in runs {
            XCTAssertEqual(run["status"] as? Int, 1)
            XCTAssertTrue(FileManager.default.fileExists(atPath: try XCTUnwrap(run["trace"] as? String)))
            XCTAssertGreaterThan(run["l2_exits"] as? Int ?? 0, 0)
        }
        // Shadow paging makes every demand fault and context switch an exit
        // to turtle; EPT-on-EPT leaves both in L2 (README, "Paging strategies").
        XCTAssertGreaterThan(ratios["mm-storm demand fault"] ?? 0, 5)
        XCTAssertGreaterThan(ratios["ctx-storm, 2 spaces, per switch"] ?? 0, 50)
        XCTAssertTrue(runs.contains { $0["mode"] as? String == "shadow" && ($0["page_fault_exits"] as? Int ?? 0) >= 16 },
                      "mm-storm's faults under shadow paging are #PF exits")
        // A fragmented EPT12 costs the lazy policy EPT02 faults that building
        // it ahead removes (docs/ARCHITECTURE.md, "EPT02").
        func ept02(_ mode: String) -> Int { runs.filter { $0["mode"] as? String == mode }.map { $0["ept02_faults"] as? Int ?? 0 }.reduce(0, +) }
        XCTAssertGreaterThan(ept02("ept-scatter"), ept02("ept-scatter-eager"))
        let svg = try String(contentsOfFile: out + "/paging.svg", encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<?xml") && svg.contains("<svg") && svg.hasSuffix("</svg>\n"))
        XCTAssertTrue(svg.contains("ctx-storm, 16 spaces, per switch"))
    }

    func testBadExperimentArgumentsAreUsageErrors() throws {
        let r = try Harness.terrapin(["experiment", "paging", "--rounds", "0"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("--rounds must be from 1 to 1000"), r.stderr)
        let g = try Harness.terrapin(["experiment", "paging", "--guests", "/nonexistent"])
        XCTAssertEqual(g.status, 64)
        XCTAssertTrue(g.stderr.contains("/nonexistent/turtle.elf is missing"), g.stderr)
    }
}
