import Foundation
import XCTest
@testable import TraceFormat

/// Each kind of damage gives its own error at the right byte offset.
final class CorruptionTests: TraceTestCase {
    var valid: [UInt8] = []
    var headerSize = 0

    override func setUpWithError() throws {
        try super.setUpWithError()
        valid = try bytes(try writeTrace("valid.trc", sampleRecords(10)))
        headerSize = (40 + sampleMetadata.encodedText().count + 63) / 64 * 64
    }

    func mutated(_ name: String, _ change: (inout [UInt8]) -> Void) throws -> String {
        var b = valid
        change(&b)
        return try store(b, name)
    }

    func testEmptyFile() throws {
        assertReadError(try store([], "empty.trc"), offset: 0, "empty file")
    }

    func testMissingFile() {
        let p = path("missing.trc")
        XCTAssertThrowsError(try TraceReader(path: p)) { error in
            XCTAssertEqual((error as? TraceError)?.errno, ENOENT)
            XCTAssertEqual((error as? TraceError)?.path, p)
        }
    }

    func testDirectoryIsNotATrace() {
        assertReadError(dir.path, offset: nil, "not a regular file")
    }

    func testTruncatedHeader() throws {
        assertReadError(try store(Array(valid.prefix(30)), "t30.trc"), offset: 30, "truncated header")
        // A prefix of the magic is truncation too, not a bad magic.
        assertReadError(try store(Array(valid.prefix(5)), "t5.trc"), offset: 5, "truncated header")
    }

    func testBadMagic() throws {
        assertReadError(try mutated("m.trc") { $0[3] = 0x21 }, offset: 3, "not a Terrapin trace (bad magic)")
    }

    func testUnknownVersion() throws {
        let p = try mutated("v.trc") { put(UInt16(7), into: &$0, at: 8) }
        assertReadError(p, offset: 8, "unknown version 7 (this reader knows version 1)")
        do {
            _ = try TraceReader(path: p)
        } catch {
            XCTAssertEqual(error.description, "\(p): byte 8: unknown version 7 (this reader knows version 1)")
        }
    }

    func testBadRecordSize() throws {
        assertReadError(try mutated("rs.trc") { put(UInt16(32), into: &$0, at: 10) }, offset: 10, "record size 32")
    }

    func testHeaderSizeNotMultipleOf64() throws {
        assertReadError(try mutated("hs.trc") { put(UInt32(100), into: &$0, at: 12) }, offset: 12, "multiple of 64")
        assertReadError(try mutated("hs0.trc") { put(UInt32(0), into: &$0, at: 12) }, offset: 12, "multiple of 64")
    }

    func testHeaderSizeBeyondFile() throws {
        let p = try mutated("hb.trc") { put(UInt32(1 << 20), into: &$0, at: 12) }
        assertReadError(p, offset: 12, "beyond the end")
    }

    func testMetadataLengthTooLarge() throws {
        let p = try mutated("ml.trc") { put(UInt32(headerSize - 39), into: &$0, at: 32) }
        assertReadError(p, offset: 32, "metadata length")
    }

    func testMetadataNotUTF8() throws {
        assertReadError(try mutated("u.trc") { $0[45] = 0xFF }, offset: 45, "not valid UTF-8")
    }

    func testMetadataLineWithoutEquals() throws {
        // Line two starts right after the first "\n"; overwrite its '=' with 'x'.
        let text = sampleMetadata.encodedText()
        let lineTwo = text.firstIndex(of: 0x0A)! + 1
        let eq = text[lineTwo...].firstIndex(of: 0x3D)!
        let p = try mutated("eq.trc") { $0[40 + eq] = 0x78 }
        assertReadError(p, offset: UInt64(40 + lineTwo), "no '='")
    }

    func testFinishedCountDoesNotMatchSize() throws {
        let more = try mutated("c.trc") { put(UInt64(11), into: &$0, at: 16) }
        assertReadError(more, offset: 16, "header says 11 records but the file holds 10")
        let torn = try mutated("c2.trc") { $0.removeLast(10) }
        assertReadError(torn, offset: 16, "header says 10 records but the file holds 9 and 54 stray bytes")
        let huge = try mutated("c3.trc") { put(UInt64.max - 1, into: &$0, at: 16) }
        assertReadError(huge, offset: 16, "header says 18446744073709551614 records")
    }

    func testTextFileIsNotATrace() throws {
        let p = try store(Array("key=value\nthis is not a trace file\n".utf8), "notes.txt")
        assertReadError(p, offset: 0, "bad magic")
        assertReadError(try store(Array("hi\n".utf8), "short.txt"), offset: 0, "bad magic")
    }

    func testELFFileIsNotATrace() throws {
        // The test binary's own interpreter, or a synthetic ELF header as fallback.
        var elf: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 56)
        if let real = FileManager.default.contents(atPath: "/proc/self/exe") { elf = [UInt8](real.prefix(4096)) }
        XCTAssertEqual(Array(elf.prefix(4)), [0x7F, 0x45, 0x4C, 0x46])
        assertReadError(try store(elf, "a.out"), offset: 0, "not a Terrapin trace (bad magic)")
    }

    func testReservedFieldsAreIgnored() throws {
        // Writers zero them; readers must not reject a file that does not.
        let p = try mutated("res.trc") { put(UInt32(0xDEAD), into: &$0, at: 36) }
        XCTAssertEqual(try TraceReader(path: p).recordCount, 10)
    }
}
