import XCTest
import KVM
@testable import Monitor

/// Loading valid images: ELF program headers by physical address, the
/// a.out kludge, and the boot information (Multiboot spec 0.6.96, 3.1 and 3.3).
final class LoaderTests: XCTestCase {
    // MARK: ELF (section 3.1.3: "the boot loader loads the ELF by its program headers")

    func testELF32SegmentsLandAtPhysicalAddressesAndBSSIsZeroed() throws {
        let elf = sampleKernel(is64: false)
        let mem = try makeMemory()
        dirty(mem)
        let info = try load(elf.build(), into: mem)
        let data = elf.fileData
        XCTAssertEqual(mem.read(at: 0x10_0000, count: data[0].count), data[0])
        XCTAssertEqual(mem.read(at: 0x10_2000, count: data[1].count), data[1])
        // bss of the second segment: [filesz, memsz) zeroed although memory was dirty.
        XCTAssertTrue(mem.isZero(at: 0x10_2000 + UInt64(data[1].count), count: 0x1800 - data[1].count))
        // Nothing past the kernel's end is touched before the info page.
        XCTAssertEqual(mem.read(at: 0x10_3800, count: 0x800), [UInt8](repeating: 0xAA, count: 0x800))
        XCTAssertEqual(mem.read(at: 0x10_0000 + UInt64(data[0].count), count: 16), [UInt8](repeating: 0xAA, count: 16))
        XCTAssertEqual(info.entry, 0x10_0010)
        XCTAssertEqual(info.kernelEnd, 0x10_3800)
        XCTAssertEqual(info.infoAddress, 0x10_4000)
        XCTAssertEqual(info.modules, [])
    }

    func testELF64SegmentsLandAtPhysicalAddressesAndBSSIsZeroed() throws {
        let elf = sampleKernel(is64: true)
        let image = elf.build()
        let parsed = try ELFImage.parse(image, path: "k")
        XCTAssertTrue(parsed.is64Bit)
        let mem = try makeMemory()
        dirty(mem, with: 0x55)
        let info = try load(image, into: mem)
        XCTAssertEqual(mem.read(at: 0x10_0000, count: elf.fileData[0].count), elf.fileData[0])
        XCTAssertEqual(mem.read(at: 0x10_2000, count: 300), elf.fileData[1])
        XCTAssertTrue(mem.isZero(at: 0x10_2000 + 300, count: 0x1800 - 300))
        XCTAssertEqual(info.entry, 0x10_0010)
    }

    /// A higher-half kernel: p_vaddr != p_paddr, the entry is a virtual address
    /// translated through the segment that contains it.
    func testEntryIsTranslatedFromVirtualToPhysical() throws {
        for (is64, base) in [(false, UInt64(0xC000_0000)), (true, 0xFFFF_FFFF_8000_0000)] {
            var elf = ELFWriter(is64: is64, entry: base + 0x10_2040, segments: [
                TestSegment(paddr: 0x10_0000, vaddr: base + 0x10_0000, data: pattern(200, seed: 5)),
                TestSegment(paddr: 0x10_2000, vaddr: base + 0x10_2000, data: pattern(100, seed: 6), memsz: 0x1000),
            ])
            let mem = try makeMemory()
            XCTAssertEqual(try load(elf.build(), into: mem).entry, 0x10_2040, "is64 \(is64)")
            XCTAssertEqual(mem.read(at: 0x10_2000, count: 100), pattern(100, seed: 6))
            // An entry inside the bss part of a segment is still inside the segment.
            elf.entry = base + 0x10_2F00
            XCTAssertEqual(try load(elf.build(), into: mem).entry, 0x10_2F00, "is64 \(is64)")
        }
    }

    func testParseSortsSegmentsAndSkipsNonLoadAndEmptySegments() throws {
        let elf = ELFWriter(is64: false, entry: 0x10_0000, segments: [
            TestSegment(paddr: 0x20_0000, data: pattern(64, seed: 1)),
            TestSegment(paddr: 0x10_0000, data: pattern(64, seed: 2)),
            TestSegment(paddr: 0x10_0000, data: pattern(32, seed: 3), type: 4),   // PT_NOTE, overlapping: ignored
            TestSegment(paddr: 0x10_0010, data: [], memsz: 0),                    // empty PT_LOAD: ignored
        ])
        let parsed = try ELFImage.parse(elf.build(), path: "k")
        XCTAssertFalse(parsed.is64Bit)
        XCTAssertEqual(parsed.segments.map(\.physicalAddress), [0x10_0000, 0x20_0000])
        XCTAssertEqual(parsed.segments.map(\.fileSize), [64, 76])
        XCTAssertEqual(parsed.physicalEntry, 0x10_0000)
        let mem = try makeMemory()
        let info = try load(elf.build(), into: mem)
        XCTAssertEqual(mem.read(at: 0x10_0000, count: 64), pattern(64, seed: 2))
        XCTAssertEqual(info.kernelEnd, 0x20_0000 + 76)
    }

    /// Section 3.1.2: bits 16-31 of the header flags are optional; unknown ones are ignored.
    func testOptionalHeaderFlagsAreIgnored() throws {
        var elf = sampleKernel(is64: false)
        elf.multiboot = multibootHeader(flags: 0x0002_0003)
        XCTAssertEqual(try load(elf.build(), into: try makeMemory()).entry, 0x10_0010)
    }

    /// GRUB and QEMU skip a magic word whose checksum does not match and keep
    /// looking (section 3.1.1: the header is identified by magic *and* checksum).
    func testStrayMagicBeforeTheRealHeaderIsSkipped() throws {
        var stray: [UInt8] = []
        stray.append32(0x1BAD_B002); stray.append32(0x1234_5678); stray.append32(0)
        var elf = sampleKernel(is64: false)
        elf.multiboot = stray + multibootHeader()
        XCTAssertEqual(try load(elf.build(), into: try makeMemory()).entry, 0x10_0010)
    }

    // MARK: a.out kludge (section 3.1.3, flag bit 16)

    func kludgeImage(headerAt offset: Int, size: Int, _ a: KludgeAddresses) -> [UInt8] {
        var b = pattern(size, seed: 9)
        b[0] = 0x90                                  // not "\u{7f}ELF"
        let h = multibootHeader(flags: 0x0001_0003, addresses: a)
        b.replaceSubrange(offset..<(offset + h.count), with: h)
        return b
    }

    func testAoutKludgeLoadsAtLoadAddressAndZeroesToBSSEnd() throws {
        let image = kludgeImage(headerAt: 0x20, size: 0x300, KludgeAddresses(
            header: 0x20_0020, load: 0x20_0000, loadEnd: 0, bssEnd: 0x20_1000, entry: 0x20_0080))
        XCTAssertFalse(ELFImage.isELF(image))
        let mem = try makeMemory()
        dirty(mem)
        let info = try load(image, into: mem)
        XCTAssertEqual(mem.read(at: 0x20_0000, count: image.count), image)   // load_end_addr 0: the whole file
        XCTAssertTrue(mem.isZero(at: 0x20_0300, count: 0xd00))
        XCTAssertEqual(mem.load(UInt8.self, at: 0x1F_FFFF), 0xAA)
        XCTAssertEqual(info.entry, 0x20_0080)
        XCTAssertEqual(info.kernelEnd, 0x20_1000)
        XCTAssertEqual(info.infoAddress, 0x20_1000)
    }

    func testAoutKludgeHonoursLoadEndAndHeaderOffset() throws {
        // The header sits at file offset 0x40 but header_addr - load_addr is 0x20:
        // the image starts at file offset 0x20. load_end_addr stops the copy early.
        let image = kludgeImage(headerAt: 0x40, size: 0x400, KludgeAddresses(
            header: 0x30_0020, load: 0x30_0000, loadEnd: 0x30_0100, bssEnd: 0x30_0800, entry: 0x30_0004))
        let mem = try makeMemory()
        dirty(mem)
        let info = try load(image, into: mem)
        XCTAssertEqual(mem.read(at: 0x30_0000, count: 0x100), Array(image[0x20..<0x120]))
        XCTAssertTrue(mem.isZero(at: 0x30_0100, count: 0x700))
        XCTAssertEqual(info.entry, 0x30_0004)
        XCTAssertEqual(info.kernelEnd, 0x30_0800)
    }

    // MARK: Boot information (section 3.3)

    func testBootInformationBlock() throws {
        let mods = [BootModule(bytes: pattern(5000, seed: 3), commandLine: "mod1.bin arg=1"),
                    BootModule(bytes: pattern(100, seed: 4), commandLine: "mod2")]
        let mem = try makeMemory()
        dirty(mem)
        let info = try load(sampleKernel(is64: false).build(), into: mem, commandLine: "kernel.elf -v quiet", modules: mods)
        let base = UInt64(info.infoAddress)

        let flags = mem.u32(base)
        for bit in [0, 2, 3, 6, 9] { XCTAssertNotEqual(flags & (1 << bit), 0, "flag bit \(bit)") }
        XCTAssertEqual(mem.u32(base + 4), 639)                                     // mem_lower, KiB
        XCTAssertEqual(mem.u32(base + 8), UInt32((testRAM - (1 << 20)) / 1024))   // mem_upper, KiB
        XCTAssertEqual(mem.cString(UInt64(mem.u32(base + 16))), "kernel.elf -v quiet")
        XCTAssertEqual(mem.cString(UInt64(mem.u32(base + 64))), "terrapin")      // boot_loader_name

        // Modules: page-aligned after the kernel, bytes copied, strings given.
        XCTAssertEqual(mem.u32(base + 20), 2)
        let modsAddr = UInt64(mem.u32(base + 24))
        var previousEnd = info.kernelEnd
        for (i, m) in mods.enumerated() {
            let entry = modsAddr + UInt64(16 * i)
            let start = UInt64(mem.u32(entry)), end = UInt64(mem.u32(entry + 4))
            XCTAssertEqual(start % 4096, 0, "module \(i) start")
            XCTAssertGreaterThanOrEqual(start, previousEnd, "module \(i) overlaps what precedes it")
            XCTAssertEqual(end - start, UInt64(m.bytes.count))
            XCTAssertEqual(mem.read(at: start, count: m.bytes.count), m.bytes)
            XCTAssertEqual(mem.cString(UInt64(mem.u32(entry + 8))), m.commandLine)
            XCTAssertEqual(mem.u32(entry + 12), 0)                                 // reserved
            XCTAssertEqual(info.modules[i], start...end)
            previousEnd = end
        }
        XCTAssertGreaterThanOrEqual(base, previousEnd, "info overlaps the last module")
        XCTAssertEqual(base % 4096, 0)

        // Memory map: 20-byte entries with a 24-byte stride, covering RAM.
        let mmapLength = UInt64(mem.u32(base + 44)), mmapAddr = UInt64(mem.u32(base + 48))
        XCTAssertEqual(mmapLength % 24, 0)
        var entries: [(base: UInt64, length: UInt64, type: UInt32)] = []
        var at = mmapAddr
        while at < mmapAddr + mmapLength {
            XCTAssertEqual(mem.u32(at), 20, "entry size field")
            entries.append((mem.u64(at + 4), mem.u64(at + 12), mem.u32(at + 20)))
            at += UInt64(mem.u32(at)) + 4
        }
        XCTAssertEqual(entries.count, 4)
        for (a, b) in zip(entries, entries.dropFirst()) { XCTAssertLessThanOrEqual(a.base + a.length, b.base) }
        XCTAssertTrue(entries.allSatisfy { $0.type == 1 || $0.type == 2 })
        let available = entries.filter { $0.type == 1 }
        XCTAssertEqual(available.first.map { [$0.base, $0.length] }, [0, 639 * 1024])
        XCTAssertEqual(available.last.map { [$0.base, $0.base + $0.length] }, [0x10_0000, UInt64(testRAM)])
        XCTAssertTrue(entries.contains { $0.type == 2 && $0.base == 0xf_0000 })     // BIOS area reserved

        // Everything the info block points to lies after the 88-byte structure, inside RAM.
        let pointers = [mem.u32(base + 16), mem.u32(base + 64), UInt32(modsAddr), UInt32(mmapAddr)]
        for p in pointers { XCTAssertTrue((base + 88..<UInt64(testRAM)).contains(UInt64(p)), "pointer \(p)") }
    }

    func testMemUpperFollowsRAMSizeAndNoModulesGivesZeroCount() throws {
        let mem = try makeMemory(8 << 20)
        let info = try load(sampleKernel(is64: true).build(), into: mem)
        XCTAssertEqual(mem.u32(UInt64(info.infoAddress) + 8), 7 * 1024)
        XCTAssertEqual(mem.u32(UInt64(info.infoAddress) + 20), 0)
        XCTAssertEqual(mem.cString(UInt64(mem.u32(UInt64(info.infoAddress) + 16))), "kernel")
    }

    /// An empty module still gets its own page, so the next one does not share its start.
    func testEmptyModuleDoesNotCollideWithTheNext() throws {
        let mods = [BootModule(bytes: [], commandLine: "empty"), BootModule(bytes: [1, 2, 3], commandLine: "three")]
        let info = try load(sampleKernel(is64: false).build(), into: try makeMemory(), modules: mods)
        XCTAssertEqual(info.modules.count, 2)
        XCTAssertLessThan(info.modules[0].lowerBound, info.modules[1].lowerBound)
        XCTAssertGreaterThan(UInt64(info.infoAddress), info.modules[1].upperBound)
    }
}
