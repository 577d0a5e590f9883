import XCTest
@testable import Monitor

final class MachineConfigTests: XCTestCase {
    func testParseMemorySizeAcceptsUnitsAndByteCounts() {
        XCTAssertEqual(MachineConfig.parseMemorySize("256M"), 256 << 20)
        XCTAssertEqual(MachineConfig.parseMemorySize("256m"), 256 << 20)
        XCTAssertEqual(MachineConfig.parseMemorySize("1G"), 1 << 30)
        XCTAssertEqual(MachineConfig.parseMemorySize("64K"), 64 << 10)
        XCTAssertEqual(MachineConfig.parseMemorySize("65536k"), 64 << 20)
        XCTAssertEqual(MachineConfig.parseMemorySize("4096"), 4096)
    }

    func testParseMemorySizeRejectsMalformedText() {
        for text in ["", "M", "12X", "-1M", "0", "0M", "+5M", " 5M", "5 M", "1.5G", "0x10M", "M5",
                     "99999999999999999999G", "9223372036854775807G", "8589934592G", "٣M"] {
            XCTAssertNil(MachineConfig.parseMemorySize(text), "\"\(text)\"")
        }
        // The largest value that still fits shifts without overflow.
        XCTAssertEqual(MachineConfig.parseMemorySize("\(Int.max >> 30)G"), (Int.max >> 30) << 30)
    }

    func testValidateBounds() {
        func check(_ size: Int) -> Bool {
            var c = MachineConfig(imagePath: "k.elf")
            c.memorySize = size
            do { try c.validate(); return true } catch {
                guard case let .badConfig(message) = error else { XCTFail("\(error)"); return false }
                XCTAssertTrue(message.contains("\(size) bytes"), message)
                return false
            }
        }
        XCTAssertTrue(check(2 << 20))
        XCTAssertTrue(check(256 << 20))
        XCTAssertTrue(check(3 << 30))
        XCTAssertFalse(check((2 << 20) - 4096))
        XCTAssertFalse(check((3 << 30) + 4096))
        XCTAssertFalse(check((4 << 20) + 1))          // not a multiple of 4 KiB
        XCTAssertFalse(check(0))
        XCTAssertTrue(check(MachineConfig(imagePath: "x").memorySize))   // the default is valid
    }

    func testGuestCommandLineUsesImageBasename() {
        var c = MachineConfig(imagePath: "/build/guests/hello.elf")
        XCTAssertEqual(c.guestCommandLine, "hello.elf")
        c.arguments = "-v  quiet=1"
        XCTAssertEqual(c.guestCommandLine, "hello.elf -v  quiet=1")
        XCTAssertEqual(MachineConfig(imagePath: "kernel").guestCommandLine, "kernel")
        XCTAssertEqual(MachineConfig(imagePath: "a/b/").guestCommandLine, "b")
    }
}
