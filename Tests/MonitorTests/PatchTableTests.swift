import NestedVMX
import XCTest
@testable import Monitor

/// The table of patched code pages (docs/PATCHING.md): which pages, what
/// they must hold, and the copy L2 runs.
final class PatchTableTests: XCTestCase {
    /// A code segment at 0x10_0ff0 whose CPUID crosses into the next page,
    /// and a CPUID at 0x10_1004.
    func table() throws -> (PatchTable, [UInt8]) {
        var code = [UInt8](repeating: 0x90, count: 0x20)
        code[0xe] = 0x0f; code[0xf] = 0xa2                  // cpuid at 0x10_0ffe, across the page boundary
        code[0x14] = 0x0f; code[0x15] = 0xa2                // cpuid at 0x10_1004
        let bytes = ELFWriter(is64: true, entry: 0x10_0ff0, segments: [TestSegment(paddr: 0x10_0ff0, data: code)],
                              multiboot: nil).build()
        return (PatchTable(sweeping: [bytes, [1, 2, 3]]), code)
    }

    func testPagesHoldTheirSitesAndTheImagesCodeBytes() throws {
        let (t, code) = try table()
        XCTAssertEqual(Set(t.pages.keys), [0x10_0000, 0x10_1000])
        let low = try XCTUnwrap(t.pages[0x10_0000]?.first), high = try XCTUnwrap(t.pages[0x10_1000]?.first)
        XCTAssertEqual(low.site(at: 0x10_0ffe)?.instruction, .cpuid)
        XCTAssertEqual(high.site(at: 0x10_1004)?.bytes, [0x0f, 0xa2])
        XCTAssertNil(low.site(at: 0x10_0fff), "only a site's first byte")
        XCTAssertEqual(low.expected.map(\.offset), [0xff0])
        XCTAssertEqual(low.expected.first?.bytes, Array(code[0..<0x10]))
        XCTAssertEqual(high.expected.first?.bytes, Array(code[0x10...]))
    }

    func testAPageMatchesOnlyWithTheImagesBytesAndItsCopyHasINT3AtEachSite() throws {
        let (t, code) = try table()
        let page = try XCTUnwrap(t.pages[0x10_1000]?.first)
        var memory = [UInt8](repeating: 0xee, count: 4096)      // not code: any bytes
        memory.replaceSubrange(0..<0x10, with: code[0x10...])
        XCTAssertTrue(memory.withUnsafeBytes { page.matches($0) })
        let copy = memory.withUnsafeBytes { page.patched($0, classes: [.cpuid]) }
        XCTAssertEqual(copy[4], 0xcc)
        XCTAssertEqual(copy[5], 0xa2, "the rest of the instruction stays")
        XCTAssertEqual(copy.enumerated().filter { $0.element != memory[$0.offset] }.count, 1)
        memory[8] = 0xc3                                          // L1 changed a code byte
        XCTAssertFalse(memory.withUnsafeBytes { page.matches($0) })
    }

    /// Two images at the same address (two modules linked at 1 MiB): each
    /// keeps its own entry, and the bytes in memory pick one.
    func testImagesAtOneAddressKeepTheirOwnEntries() throws {
        func image(_ code: [UInt8]) -> [UInt8] {
            ELFWriter(is64: true, entry: 0x10_0000, segments: [TestSegment(paddr: 0x10_0000, data: code)], multiboot: nil).build()
        }
        let a: [UInt8] = [0x0f, 0xa2, 0x90, 0x90], b: [UInt8] = [0x90, 0x90, 0x0f, 0x31]   // cpuid at 0, rdtsc at 2
        let t = PatchTable(sweeping: [image(a), image(b)])
        XCTAssertEqual(t.pages[0x10_0000]?.count, 2)
        var memory = [UInt8](repeating: 0, count: 4096)
        memory.replaceSubrange(0..<4, with: b)
        let entry = memory.withUnsafeBytes { t.page(at: 0x10_0000, holding: $0) }
        XCTAssertEqual(entry?.sites.map(\.instruction), [.rdtsc])
        memory[0] = 0xc3
        XCTAssertNil(memory.withUnsafeBytes { t.page(at: 0x10_0000, holding: $0) })
    }

    /// Only the sites of the classes L1's controls ask for get INT3: an
    /// RDTSC without RDTSC exiting or an offset runs as it is.
    func testACopyTrapsOnlyTheClassesAskedFor() throws {
        let code: [UInt8] = [0x0f, 0xa2, 0x0f, 0x31, 0xf3, 0x90]                           // cpuid; rdtsc; pause
        let t = PatchTable(sweeping: [ELFWriter(is64: true, entry: 0x10_0000, segments: [TestSegment(paddr: 0x10_0000, data: code)],
                                                multiboot: nil).build()])
        let page = try XCTUnwrap(t.pages[0x10_0000]?.first)
        XCTAssertEqual(page.sites.map(\.trapClass), [.cpuid, .rdtsc, .pause])
        var memory = [UInt8](repeating: 0, count: 4096)
        memory.replaceSubrange(0..<6, with: code)
        let cpuidOnly = memory.withUnsafeBytes { page.patched($0, classes: [.cpuid, .invd]) }
        XCTAssertEqual(Array(cpuidOnly[0..<6]), [0xcc, 0xa2, 0x0f, 0x31, 0xf3, 0x90])
        let all = memory.withUnsafeBytes { page.patched($0, classes: [.cpuid, .rdtsc, .pause]) }
        XCTAssertEqual(Array(all[0..<6]), [0xcc, 0xa2, 0xcc, 0x31, 0xcc, 0x90])
        XCTAssertFalse(page.traps([.invd, .movDR]), "no copy at all for a page without a trapped site")
        XCTAssertTrue(page.traps([.pause]))
    }

    /// A MOV CR's class is its register and direction.
    func testControlRegisterMovesAreClassedByRegisterAndDirection() {
        XCTAssertEqual(SensitiveSite(address: 0, bytes: [0x0f, 0x22, 0xd8], instruction: .controlRegisterMove).trapClass, .cr3Load)
        XCTAssertEqual(SensitiveSite(address: 0, bytes: [0x0f, 0x20, 0xd8], instruction: .controlRegisterMove).trapClass, .cr3Store)
        XCTAssertEqual(SensitiveSite(address: 0, bytes: [0x0f, 0x20, 0xc0], instruction: .controlRegisterMove).trapClass,
                       .controlRegisterRead)
        XCTAssertEqual(SensitiveSite(address: 0, bytes: [0x0f, 0x22, 0xe0], instruction: .controlRegisterMove).trapClass,
                       .controlRegisterWrite)
        XCTAssertEqual(SensitiveSite(address: 0, bytes: [0x44, 0x0f, 0x22, 0xc0], instruction: .controlRegisterMove).trapClass, .cr8)
    }
}
