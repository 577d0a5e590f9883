import Foundation
import TraceFormat
import XCTest

/// Each abnormal end gets its documented status and a register dump; none
/// crashes or hangs the monitor.
final class FaultTests: XCTestCase {
    override func setUpWithError() throws { try Harness.prepare() }

    private func fault(_ mode: String, trace: String? = nil) throws -> Harness.Result {
        var args = ["run", Harness.guest("fault"), "--append", mode]
        if let trace { args += ["--trace", trace] }
        return try Harness.terrapin(args)
    }

    func testTripleFaultEndsWithStatus80AndARegisterDump() throws {
        let trace = Harness.temporaryPath("triple.trc")
        let r = try fault("triple", trace: trace)
        XCTAssertEqual(r.status, 80, r.stderr)
        XCTAssertTrue(r.stderr.contains("triple-faulted"), r.stderr)
        XCTAssertTrue(r.stderr.contains("rip="), r.stderr)
        let reader = try TraceReader(path: trace)
        XCTAssertEqual(reader.last?.kind, .shutdown)
    }

    func testHaltWithInterruptsDisabledEndsWithStatus82() throws {
        let r = try fault("halt")
        XCTAssertEqual(r.status, 82, r.stderr)
        XCTAssertTrue(r.stderr.contains("interrupts disabled"), r.stderr)
        XCTAssertTrue(r.stderr.contains("cr0="), r.stderr)
    }

    func testHaltWithNothingArmedEndsWithStatus82() throws {
        let r = try fault("idle")
        XCTAssertEqual(r.status, 82, r.stderr)
        XCTAssertTrue(r.stderr.contains("no timer armed"), r.stderr)
    }

    func testGuestExceptionReachesTheGuestsOwnHandler() throws {
        let r = try fault("ud")
        XCTAssertEqual(r.status, 7, r.stdout)     // the guest's panic value 3
        XCTAssertTrue(r.stdout.contains("UNEXPECTED EXCEPTION vector 6 (#UD)"), r.stdout)
    }

    func testUnknownMSRRaisesGPInTheGuest() throws {
        let trace = Harness.temporaryPath("msr.trc")
        let r = try fault("msr", trace: trace)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        let reader = try TraceReader(path: trace)
        XCTAssertTrue(reader.contains { $0.kind == .rdmsr && $0.address == 0x1234 && $0.flags.contains(.faulted) })
    }

    func testGuestUsageErrorIsItsOwnStatus() throws {
        let r = try fault("nonsense")
        XCTAssertEqual(r.status, 5, r.stdout)     // the guest's usage value 2
    }
}
