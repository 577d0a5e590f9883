import XCTest
import KVM
@testable import Monitor
import TraceFormat

/// Images the loader must refuse with a clear `.badImage` reason, and seeded
/// mutation fuzzing: the monitor never crashes on a bad image.
final class LoaderErrorTests: XCTestCase {
    // MARK: Multiboot header (section 3.1)

    func testNotELFWithoutKludge() {
        let image = [UInt8](repeating: 0x90, count: 16) + multibootHeader() + pattern(64, seed: 1)
        assertBadImage(image, "not an ELF file")
    }

    func testNoMultibootHeader() {
        var elf = sampleKernel(is64: false)
        elf.multiboot = nil
        assertBadImage(elf.build(), "no multiboot header")
    }

    /// Section 3.1: the header must lie within the first 8192 bytes.
    func testHeaderBeyondFirst8KiBIsNotFound() {
        var elf = sampleKernel(is64: false)
        elf.multiboot = nil
        elf.segments[0].data = [UInt8](repeating: 0, count: 8192) + multibootHeader() + pattern(16, seed: 1)
        assertBadImage(elf.build(), "no multiboot header in the first 8192 bytes")
    }

    func testBadChecksum() {
        var elf = sampleKernel(is64: false)
        elf.multiboot = multibootHeader(checksum: 0x1234)
        assertBadImage(elf.build(), "bad checksum")
    }

    /// Section 3.1.2: a requirement bit (0-15) the loader does not know must stop the boot.
    func testUnsupportedRequiredFlags() {
        for bit in [3, 7, 15] {
            var elf = sampleKernel(is64: false)
            elf.multiboot = multibootHeader(flags: 0x3 | 1 << UInt32(bit))
            assertBadImage(elf.build(), "unsupported features")
        }
    }

    // MARK: ELF program headers

    func testSegmentOutsideRAM() {
        let elf = ELFWriter(is64: false, entry: 0x3F_F000, segments: [
            TestSegment(paddr: 0x3F_F000, data: pattern(64, seed: 1), memsz: 0x2000)])
        assertBadImage(elf.build(), "outside the 4 MiB of RAM")
    }

    func testOverlappingSegments() {
        let elf = ELFWriter(is64: true, entry: 0x10_0000, segments: [
            TestSegment(paddr: 0x10_0000, data: pattern(64, seed: 1), memsz: 0x1000),
            TestSegment(paddr: 0x10_0800, data: pattern(64, seed: 2))])
        assertBadImage(elf.build(), "overlap")
    }

    func testSegmentPastEndOfFile() {
        let image = sampleKernel(is64: false).build()
        assertBadImage(Array(image.dropLast(10)), "past the end of the file")
    }

    func testFileCutInsideELFHeader() {
        let image = sampleKernel(is64: false).build()
        for length in [20, 40, 51] {
            XCTAssertThrowsError(try ELFImage.parse(Array(image.prefix(length)), path: "cut")) { error in
                guard case let MonitorError.badImage(path, reason)? = error as? MonitorError else {
                    return XCTFail("\(error)")
                }
                XCTAssertEqual(path, "cut")
                XCTAssertTrue(reason.contains("truncated"), "length \(length): \(reason)")
            }
        }
        // Through the loader the cut file has lost its multiboot header too.
        assertBadImage(Array(image.prefix(40)), "no multiboot header")
    }

    func testFileSizeLargerThanMemorySize() {
        var elf = sampleKernel(is64: true)
        elf.segments[1].memsz = 100   // filesz 300
        assertBadImage(elf.build(), "larger than its memory size")
    }

    func testWrongMachine() {
        var elf = sampleKernel(is64: false)
        elf.machine = ELFWriter.emARM
        assertBadImage(elf.build(), "machine 40 is not x86")
    }

    func testSharedObjectIsRejected() {
        var elf = sampleKernel(is64: true)
        elf.type = ELFWriter.etDyn
        assertBadImage(elf.build(), "not an executable (ET_EXEC)")
    }

    func testEntryOutsideEverySegment() {
        var elf = sampleKernel(is64: false)
        elf.entry = 0x20_0000
        assertBadImage(elf.build(), "outside every loaded segment")
    }

    func testNoLoadableSegments() {
        var elf = sampleKernel(is64: false)
        for i in elf.segments.indices { elf.segments[i].type = 4 }   // PT_NOTE
        assertBadImage(elf.build(), "no loadable (PT_LOAD) segments")
    }

    // MARK: Modules and the information block

    func testModulesThatDoNotFit() {
        let mods = [BootModule(bytes: pattern(1 << 20, seed: 1), commandLine: "a"),
                    BootModule(bytes: pattern(3 << 20, seed: 2), commandLine: "big.bin x")]
        assertBadImage(sampleKernel(is64: false).build(), "module \"big.bin x\" does not fit", modules: mods)
    }

    func testNoRoomForBootInformation() {
        let elf = ELFWriter(is64: false, entry: 0x10_0000, segments: [
            TestSegment(paddr: 0x10_0000, data: pattern(64, seed: 1), memsz: UInt64(testRAM) - 0x10_0000 - 16)])
        assertBadImage(elf.build(), "no room for the multiboot information")
    }

    /// The memory map describes RAM from 1 MiB up; a smaller RAM is refused, not a crash.
    func testRAMBelowOneMiBIsRefused() throws {
        let elf = ELFWriter(is64: false, entry: 0x1000, segments: [TestSegment(paddr: 0x1000, data: pattern(64, seed: 1))])
        assertBadImage(elf.build(), "below 1 MiB", memory: try makeMemory(512 << 10))
    }

    // MARK: a.out kludge addresses (section 3.1.3)

    func kludge(_ a: KludgeAddresses, size: Int = 0x200) -> [UInt8] {
        var b = [UInt8](repeating: 0x90, count: size)
        let h = multibootHeader(flags: 0x0001_0003, addresses: a)
        b.replaceSubrange(0x20..<(0x20 + h.count), with: h)
        return b
    }

    func testKludgeErrors() {
        assertBadImage(kludge(KludgeAddresses(header: 0x1F_FFF0, load: 0x20_0000, loadEnd: 0, bssEnd: 0, entry: 0x20_0000)),
                       "is below load_addr")
        assertBadImage(kludge(KludgeAddresses(header: 0x20_0040, load: 0x20_0000, loadEnd: 0, bssEnd: 0, entry: 0x20_0000)),
                       "past the header")
        assertBadImage(kludge(KludgeAddresses(header: 0x20_0020, load: 0x20_0000, loadEnd: 0x20_0400, bssEnd: 0, entry: 0x20_0000)),
                       "past the end of the file")
        assertBadImage(kludge(KludgeAddresses(header: 0x20_0020, load: 0x20_0000, loadEnd: 0x1F_0000, bssEnd: 0, entry: 0x20_0000)),
                       "past the end of the file")
        assertBadImage(kludge(KludgeAddresses(header: 0x20_0020, load: 0x20_0000, loadEnd: 0, bssEnd: 0x50_0000, entry: 0x20_0000)),
                       "beyond the 4 MiB of RAM")
        // Flag 16 set but the file ends inside the address fields.
        let truncated = [UInt8](repeating: 0x90, count: 8) + multibootHeader(flags: 0x0001_0003) + [0, 0, 0, 0]
        assertBadImage(truncated, "truncated")
    }

    // MARK: Seeded mutation fuzzing

    /// ~2000 deterministic mutations of a valid ELF32 kernel: each loads or
    /// throws `.badImage`; a successful load leaves a consistent BootInfo.
    func testMutatedELFNeverCrashes() throws {
        let valid = sampleKernel(is64: false).build()
        let mem = try makeMemory()
        var rng = SeededRandom(seed: 0x5EED_E1F0)
        var loaded = 0, refused = 0
        let headerAt = sampleKernel(is64: false).fileOffsets[0]   // the multiboot header
        for round in 0..<2000 {
            var b = valid
            for _ in 0..<(1 + rng.below(4)) {
                switch rng.below(5) {
                case 0, 1:   // flip bits in the ELF and program headers or the multiboot header
                    if !b.isEmpty { b[rng.below(min(512, b.count))] ^= UInt8(truncatingIfNeeded: rng.next() | 1) }
                case 2:      // an extreme value in a header word
                    let at = rng.below(min(128, b.count) / 4) * 4
                    if at + 4 <= b.count { b.put32([0xFFFF_FFFF, 0x8000_0000, 0x7FFF_FFFF, 0][rng.below(4)], at: at) }
                case 3:      // truncate
                    b.removeLast(rng.below(b.count + 1))
                default:     // re-sign a mutated multiboot header, so it gets past the checksum
                    let at = headerAt
                    if at + 12 <= b.count {
                        b.put32(UInt32(truncatingIfNeeded: rng.next()) & 0x0001_0007, at: at + 4)
                        let flags = UInt32(b[at + 4]) | UInt32(b[at + 5]) << 8 | UInt32(b[at + 6]) << 16
                        b.put32(0 &- 0x1BAD_B002 &- flags, at: at + 8)
                    }
                }
            }
            do {
                let info = try MultibootLoader.load(image: b, path: "fuzz", commandLine: "k", modules: [], into: mem)
                loaded += 1
                XCTAssertLessThan(UInt64(info.entry), UInt64(testRAM), "round \(round)")
                XCTAssertLessThanOrEqual(info.kernelEnd, UInt64(info.infoAddress), "round \(round)")
                XCTAssertEqual(info.infoAddress % 4096, 0, "round \(round)")
                XCTAssertEqual(mem.u32(UInt64(info.infoAddress)), 0x24D, "round \(round)")
            } catch let MonitorError.badImage(path, reason) {
                refused += 1
                XCTAssertEqual(path, "fuzz")
                XCTAssertFalse(reason.isEmpty, "round \(round)")
            } catch {
                XCTFail("round \(round): unexpected \(error)")
            }
        }
        XCTAssertGreaterThan(loaded, 200, "the mutations should leave some images loadable")
        XCTAssertGreaterThan(refused, 500)
    }

    /// Random a.out-kludge address fields with a valid checksum: guest-chosen
    /// arithmetic must never trap.
    func testRandomKludgeAddressesNeverCrash() throws {
        let mem = try makeMemory()
        var rng = SeededRandom(seed: 0xA0A0_17)
        var loaded = 0
        func address() -> UInt32 {
            switch rng.below(4) {
            case 0: return UInt32(truncatingIfNeeded: rng.next())
            case 1: return [0, 0xFFFF_FFFF, 0x8000_0000, UInt32(testRAM)][rng.below(4)]
            default: return 0x20_0000 &+ UInt32(rng.below(0x400)) &- 0x200
            }
        }
        /// Near `v` usually (so some images are consistent enough to load), anywhere sometimes.
        func near(_ v: UInt32) -> UInt32 { rng.below(4) == 0 ? address() : v &+ UInt32(rng.below(0x400)) &- 0x200 }
        for round in 0..<1000 {
            let load = address()
            let a = KludgeAddresses(header: rng.below(4) == 0 ? address() : load &+ 0x20, load: load,
                                    loadEnd: rng.below(3) == 0 ? 0 : near(load &+ 0x200),
                                    bssEnd: rng.below(3) == 0 ? 0 : near(load &+ 0x1000), entry: address())
            do {
                let info = try MultibootLoader.load(image: kludge(a, size: 0x200 + rng.below(0x200)), path: "k",
                                                    commandLine: "k", modules: [], into: mem)
                loaded += 1
                XCTAssertEqual(info.entry, a.entry, "round \(round)")
                XCTAssertLessThanOrEqual(info.kernelEnd, UInt64(testRAM), "round \(round)")
            } catch let MonitorError.badImage(_, reason) {
                XCTAssertFalse(reason.isEmpty)
            } catch {
                XCTFail("round \(round): unexpected \(error)")
            }
        }
        XCTAssertGreaterThan(loaded, 100)
    }
}
