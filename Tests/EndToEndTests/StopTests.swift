import Foundation
import TraceFormat
import XCTest

/// SIGINT, SIGTERM and a closed output pipe stop a run with status 88 and a
/// finished trace (README, exit status).
final class StopTests: XCTestCase {
    override func setUpWithError() throws { try Harness.prepare() }

    /// A long storm, stopped by `signal` once it has printed its first line.
    func testSignalsStopTheRunAndFinishTheTrace() throws {
        for (signal, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
            let trace = Harness.temporaryPath("stopped-\(name).trc")
            let out = Harness.temporaryPath("stopped-\(name).out"), err = Harness.temporaryPath("stopped-\(name).err")
            for p in [out, err] { _ = FileManager.default.createFile(atPath: p, contents: nil) }
            let process = Process()
            process.executableURL = Harness.binDirectory.appendingPathComponent("terrapin")
            process.arguments = ["run", Harness.guest("pio-storm"), "--append", "1000000000", "--trace", trace]
            process.currentDirectoryURL = Harness.packageRoot
            process.standardOutput = FileHandle(forWritingAtPath: out)
            process.standardError = FileHandle(forWritingAtPath: err)
            try process.run()
            // Wait (bounded) for the guest's first line: the storm is under way.
            var started = false
            for _ in 0..<6000 where !started {
                started = (try? String(contentsOfFile: out, encoding: .utf8))?.contains("exits to port") ?? false
                if !started { usleep(10_000) }
            }
            XCTAssertTrue(started, "the storm never started")
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            XCTAssertEqual(process.terminationStatus, 88, stderr)
            XCTAssertTrue(stderr.contains("stopped by \(name)"), stderr)
            let reader = try TraceReader(path: trace)
            XCTAssertTrue(reader.finished, "the trace was finished")
            XCTAssertGreaterThan(reader.filter { $0.kind == .ioOut && $0.address == 0x80 }.count, 0)
            // The last record says why the trace ends there, and nothing says it earlier.
            XCTAssertEqual(reader[reader.recordCount - 1].kind, .stopped)
            XCTAssertEqual(reader[reader.recordCount - 1].address, UInt64(signal))
            XCTAssertEqual(reader.filter { $0.kind == .stopped }.count, 1)
            let summary = try Harness.terrapinTrace(["summary", trace])
            XCTAssertTrue(summary.stdout.contains("stopped by \(name)"), summary.stdout)
        }
    }

    /// `terrapin run ... | head`: the guest's output meets a closed pipe.
    func testAClosedOutputPipeStopsTheRun() throws {
        let trace = Harness.temporaryPath("pipe.trc")
        let pipe = Pipe()
        try pipe.fileHandleForReading.close()
        let err = Harness.temporaryPath("pipe.err")
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        let process = Process()
        process.executableURL = Harness.binDirectory.appendingPathComponent("terrapin")
        process.arguments = ["run", Harness.guest("pio-storm"), "--append", "1000000000", "--trace", trace]
        process.currentDirectoryURL = Harness.packageRoot
        process.standardOutput = pipe
        process.standardError = FileHandle(forWritingAtPath: err)
        try process.run()
        process.waitUntilExit()
        let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        XCTAssertEqual(process.terminationStatus, 88, stderr)
        XCTAssertTrue(stderr.contains("stopped by SIGPIPE"), stderr)
        let reader = try TraceReader(path: trace)
        XCTAssertTrue(reader.finished)
        XCTAssertEqual(reader[reader.recordCount - 1].kind, .stopped)
        XCTAssertEqual(reader[reader.recordCount - 1].address, UInt64(SIGPIPE))
    }
}
