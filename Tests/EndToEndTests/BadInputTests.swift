import Foundation
import TraceFormat
import XCTest

/// Bad images and bad flags get a clear message and a documented status.
final class BadInputTests: XCTestCase {
    override func setUpWithError() throws { try Harness.prepare() }

    private func write(_ bytes: [UInt8], _ name: String) -> String {
        let path = Harness.temporaryPath(name)
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func testNotAnELFFile() throws {
        let path = write(Array("just some text, long enough to be searched for a header".utf8), "text.img")
        let r = try Harness.terrapin(["run", path])
        XCTAssertEqual(r.status, 66)
        XCTAssertTrue(r.stderr.contains("no multiboot header"), r.stderr)
    }

    /// No subcommand is a usage error: status 64 and the usage on stderr.
    func testNoArgumentsIsAUsageError() throws {
        let r = try Harness.terrapin([])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("USAGE: terrapin <subcommand>"), r.stderr)
        XCTAssertEqual(try Harness.terrapin(["--help"]).status, 0, "asking for help is not an error")
    }

    /// A trace error says the real reason once, never strerror(0).
    func testATraceThatCannotBeCreatedSaysWhy() throws {
        let r = try Harness.terrapin(["run", Harness.guest("hello"), "--trace", "/nonexistent/dir/x.trc"])
        XCTAssertEqual(r.status, 70)
        XCTAssertTrue(r.stderr.contains("x.trc: cannot create: No such file or directory"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Success"), r.stderr)
    }

    /// A disk that fills mid-run (a 128 KiB tmpfs, in a mount namespace of
    /// its own) ends the run with 70; stderr still gives the guest's own
    /// outcome, and the trace reads back as far as it got.
    func testADiskFullTraceKeepsTheGuestsOutcomeAndAReadableTrace() throws {
        guard (try? Harness.run(URL(fileURLWithPath: "/usr/bin/unshare"), ["-m", "true"]))?.status == 0 else {
            throw XCTSkip("needs mount namespaces (unshare -m) to make a small filesystem")
        }
        let dir = Harness.temporaryPath("full-disk"), copy = Harness.temporaryPath("full-disk.trc")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let terrapin = Harness.binDirectory.appendingPathComponent("terrapin").path
        // The header fits; the first 256 KiB batch of records does not.
        let script = """
            mount -t tmpfs -o size=128k none \(dir) || exit 99
            \(terrapin) run \(Harness.guest("pio-storm")) --append 20000 --trace \(dir)/t.trc
            status=$?; cp \(dir)/t.trc \(copy); exit $status
            """
        let r = try Harness.run(URL(fileURLWithPath: "/usr/bin/unshare"), ["-m", "/bin/sh", "-c", script])
        XCTAssertEqual(r.status, 70, r.stderr)
        XCTAssertTrue(r.stderr.contains("No space left on device"), r.stderr)
        XCTAssertTrue(r.stderr.contains("guest exited with value 0 (status 1) before the trace failed"), r.stderr)
        let reader = try TraceReader(path: copy)
        XCTAssertFalse(reader.finished)
        XCTAssertGreaterThan(reader.recordCount, 0)
        XCTAssertLessThan(reader.recordCount, 20000)
    }

    /// A FIFO as the image is refused at once, never waited on.
    func testAFIFOIsNotAnImage() throws {
        let path = Harness.temporaryPath("fifo.img")
        unlink(path)
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        let r = try Harness.terrapin(["run", path])
        XCTAssertEqual(r.status, 66)
        XCTAssertTrue(r.stderr.contains("not a regular file"), r.stderr)
        let m = try Harness.terrapin(["run", Harness.guest("hello"), "--module", path])
        XCTAssertEqual(m.status, 66)
    }

    /// Serial output that cannot be written is reported once; the guest's
    /// own status stands.
    func testSerialWriteErrorsAreReported() throws {
        let r = try Harness.terrapin(["run", Harness.guest("hello"), "--serial", "/dev/full"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr.components(separatedBy: "serial output to /dev/full failed: No space left on device").count, 2,
                       r.stderr)
    }

    /// No output may be an input of the run, nor may two outputs be one
    /// file: refused with status 64 before anything is written.
    func testOutputsThatAreInputsAreRefused() throws {
        let image = Harness.temporaryPath("clobber.elf")
        try? FileManager.default.removeItem(atPath: image)
        try FileManager.default.copyItem(atPath: Harness.packageRoot.appendingPathComponent(Harness.guest("hello")).path, toPath: image)
        let original = try XCTUnwrap(FileManager.default.contents(atPath: image))
        let link = Harness.temporaryPath("clobber-link.elf")
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: image)
        let trace = Harness.temporaryPath("twice.trc")
        for args in [["run", image, "--serial", image], ["run", image, "--trace", link],
                     ["run", Harness.guest("hello"), "--module", image, "--trace", image],
                     ["run", Harness.guest("hello"), "--trace", trace, "--serial", trace]] {
            let r = try Harness.terrapin(args)
            XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("refusing to overwrite it") || r.stderr.contains("are the same file"), r.stderr)
        }
        XCTAssertEqual(try XCTUnwrap(FileManager.default.contents(atPath: image)), original, "the image is intact")
    }

    func testMissingImage() throws {
        let r = try Harness.terrapin(["run", "/nonexistent/kernel.elf"])
        XCTAssertEqual(r.status, 66)
        XCTAssertTrue(r.stderr.contains("/nonexistent/kernel.elf"), r.stderr)
    }

    func testTruncatedImage() throws {
        let full = try XCTUnwrap(FileManager.default.contents(atPath: Harness.packageRoot.appendingPathComponent(Harness.guest("hello")).path))
        let path = write(Array(full.prefix(600)), "truncated.elf")
        let r = try Harness.terrapin(["run", path])
        XCTAssertEqual(r.status, 66, r.stderr)
        XCTAssertTrue(r.stderr.contains("truncated") || r.stderr.contains("past the end"), r.stderr)
    }

    func testMissingModule() throws {
        let r = try Harness.terrapin(["run", Harness.guest("hello"), "--module", "/nonexistent/module.bin arg"])
        XCTAssertEqual(r.status, 66)
        XCTAssertTrue(r.stderr.contains("/nonexistent/module.bin"), r.stderr)
    }

    func testBadMemoryFlag() throws {
        for value in ["12Q", "0", "1K", "8G", "-5M", ""] {
            let r = try Harness.terrapin(["run", Harness.guest("hello"), "--memory", value])
            XCTAssertEqual(r.status, 64, "--memory \(value): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("--memory"), r.stderr)
        }
    }

    func testImageTooBigForMemory() throws {
        let r = try Harness.terrapin(["run", Harness.guest("hello"), "--memory", "1M"])
        XCTAssertEqual(r.status, 64, r.stderr)
    }

    func testUnknownFlagAndMissingImage() throws {
        let unknown = try Harness.terrapin(["run", Harness.guest("hello"), "--frobnicate"])
        XCTAssertEqual(unknown.status, 64)
        XCTAssertTrue(unknown.stderr.contains("frobnicate"), unknown.stderr)
        let none = try Harness.terrapin(["run"])
        XCTAssertEqual(none.status, 64)
    }

    func testUnwritableTrace() throws {
        let r = try Harness.terrapin(["run", Harness.guest("hello"), "--trace", "/nonexistent/dir/t.trc"])
        XCTAssertEqual(r.status, 70, r.stderr)
        XCTAssertTrue(r.stderr.contains("/nonexistent/dir/t.trc"), r.stderr)
    }

    func testHelpReadsWell() throws {
        let r = try Harness.terrapin(["run", "--help"])
        XCTAssertEqual(r.status, 0)
        for flag in ["--append", "--module", "--memory", "--trace", "--serial"] {
            XCTAssertTrue(r.stdout.contains(flag), "help lacks \(flag):\n\(r.stdout)")
        }
    }
}
