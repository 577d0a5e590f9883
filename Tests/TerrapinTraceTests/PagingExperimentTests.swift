import TraceReports
import XCTest

/// The pure parts of `terrapin experiment paging`: reading each guest's own
/// figure, and the median with its bootstrap interval.
final class PagingExperimentTests: XCTestCase {
    func testEachWorkloadsFigureIsReadFromItsOutput() {
        let mm = "mm-storm: 16 pages at 0x8000000000\nmm-storm: demand fault 163496, unmap+refault 137193, remap 10075348 TSC cycles per page\n"
        XCTAssertEqual(PagingExperiment.figure("mm-demand", in: mm), 163_496)
        XCTAssertEqual(PagingExperiment.figure("mm-unmap", in: mm), 137_193)
        XCTAssertEqual(PagingExperiment.figure("mm-remap", in: mm), 10_075_348)
        XCTAssertEqual(PagingExperiment.figure("ctx", in: "ctx-storm: 2286386 TSC cycles, 14289 per switch\n"), 14_289)
        XCTAssertEqual(PagingExperiment.figure("page-touch", in: "page-touch: first touch 3336000 TSC cycles (16680 per page), read back 10\n"),
                       16_680)
        XCTAssertEqual(PagingExperiment.figure("pio", in: "pio-storm: 239324800 TSC cycles, 1196624 per exit\n"), 1_196_624)
        XCTAssertEqual(PagingExperiment.figure("compute", in: "compute: checksum 0x0000000000001234, 2149386706 TSC cycles\n"), 2_149_386_706)
        XCTAssertNil(PagingExperiment.figure("ctx", in: "PASS: something else\n"), "no line, no figure")
    }

    func testTheEstimateIsTheMedianWithAnIntervalAroundIt() throws {
        let e = try XCTUnwrap(PagingExperiment.estimate([10, 30, 20, 1000, 25]))
        XCTAssertEqual(e.median, 25)
        XCTAssertLessThanOrEqual(e.low, e.median)
        XCTAssertGreaterThanOrEqual(e.high, e.median)
        XCTAssertGreaterThanOrEqual(e.low, 10)
        XCTAssertLessThanOrEqual(e.high, 1000)
        XCTAssertEqual(PagingExperiment.estimate([10, 30, 20, 1000, 25]), e, "a fixed seed: the same runs give the same interval")
        XCTAssertEqual(PagingExperiment.estimate([7]), PagingExperiment.Estimate(median: 7, low: 7, high: 7))
        XCTAssertNil(PagingExperiment.estimate([]))
    }

    func testEveryWorkloadHasRowsAndOperations() {
        for fast in [false, true] {
            let w = PagingExperiment.workloads(fast: fast)
            XCTAssertEqual(w.flatMap(\.rows).count, 9)
            XCTAssertTrue(w.allSatisfy { $0.operations > 0 && !$0.rows.isEmpty })
        }
    }
}
