import XCTest
import KVM
@testable import Monitor

// MARK: Little-endian byte helpers

extension Array where Element == UInt8 {
    mutating func append16(_ v: UInt16) { for i in 0..<2 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt16(i)))) } }
    mutating func append32(_ v: UInt32) { for i in 0..<4 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func append64(_ v: UInt64) { for i in 0..<8 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func put32(_ v: UInt32, at offset: Int) {
        for i in 0..<4 { self[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
    }
}

/// Deterministic bytes: a recognisable pattern per (seed, index).
func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed) &* 31 &+ 1) }
}

// MARK: Multiboot header (Multiboot spec 0.6.96, section 3.1)

/// The a.out-kludge address fields of a Multiboot header (section 3.1.3).
struct KludgeAddresses {
    var header: UInt32, load: UInt32, loadEnd: UInt32, bssEnd: UInt32, entry: UInt32
}

/// A Multiboot v1 header: magic, flags, checksum (section 3.1.1), plus the
/// address fields when `addresses` is given. `checksum` overrides the correct one.
func multibootHeader(flags: UInt32 = 0x3, checksum: UInt32? = nil, addresses: KludgeAddresses? = nil) -> [UInt8] {
    var b: [UInt8] = []
    b.append32(0x1BAD_B002)
    b.append32(flags)
    b.append32(checksum ?? (0 &- 0x1BAD_B002 &- flags))
    if let a = addresses { for v in [a.header, a.load, a.loadEnd, a.bssEnd, a.entry] { b.append32(v) } }
    return b
}

// MARK: A tiny ELF writer (System V gABI, ELF32 and ELF64 ET_EXEC images)

struct TestSegment {
    var paddr: UInt64
    var vaddr: UInt64
    var data: [UInt8]
    /// nil: the file size (for the first segment, including the multiboot header).
    var memsz: UInt64?
    var type: UInt32 = 1          // PT_LOAD
    init(paddr: UInt64, vaddr: UInt64? = nil, data: [UInt8], memsz: UInt64? = nil, type: UInt32 = 1) {
        self.paddr = paddr; self.vaddr = vaddr ?? paddr; self.data = data; self.memsz = memsz; self.type = type
    }
}

struct ELFWriter {
    static let em386: UInt16 = 3, emX86_64: UInt16 = 62, emARM: UInt16 = 40
    static let etExec: UInt16 = 2, etDyn: UInt16 = 3

    var is64: Bool
    var machine: UInt16
    var type: UInt16 = ELFWriter.etExec
    var entry: UInt64
    var segments: [TestSegment]
    /// Prepended to the first segment's file data (so it loads at its p_paddr).
    var multiboot: [UInt8]? = multibootHeader()

    init(is64: Bool, entry: UInt64, segments: [TestSegment], multiboot: [UInt8]? = multibootHeader()) {
        self.is64 = is64; self.machine = is64 ? ELFWriter.emX86_64 : ELFWriter.em386
        self.entry = entry; self.segments = segments; self.multiboot = multiboot
    }

    var ehdrSize: Int { is64 ? 64 : 52 }
    var phdrSize: Int { is64 ? 56 : 32 }

    /// Each segment's bytes as written to the file (the first with the header in front).
    var fileData: [[UInt8]] {
        segments.enumerated().map { i, s in i == 0 ? (multiboot ?? []) + s.data : s.data }
    }

    /// File offsets of each segment's data: after the headers, 16-byte aligned.
    var fileOffsets: [Int] {
        var at = ehdrSize + phdrSize * segments.count
        return fileData.map { d in
            at = (at + 15) & ~15
            defer { at += d.count }
            return at
        }
    }

    func build() -> [UInt8] {
        let data = fileData, offsets = fileOffsets
        var b: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        b.append16(type); b.append16(machine); b.append32(1)
        func word(_ v: UInt64) { if is64 { b.append64(v) } else { b.append32(UInt32(truncatingIfNeeded: v)) } }
        word(entry); word(UInt64(ehdrSize)); word(0)                       // e_entry, e_phoff, e_shoff
        b.append32(0); b.append16(UInt16(ehdrSize)); b.append16(UInt16(phdrSize))
        b.append16(UInt16(segments.count)); b.append16(0); b.append16(0); b.append16(0)
        precondition(b.count == ehdrSize)
        for (i, s) in segments.enumerated() {
            let memsz = s.memsz ?? UInt64(data[i].count)
            b.append32(s.type)
            if is64 {
                b.append32(7); b.append64(UInt64(offsets[i])); b.append64(s.vaddr); b.append64(s.paddr)
                b.append64(UInt64(data[i].count)); b.append64(memsz); b.append64(16)
            } else {
                for v in [UInt64(offsets[i]), s.vaddr, s.paddr, UInt64(data[i].count), memsz] {
                    b.append32(UInt32(truncatingIfNeeded: v))
                }
                b.append32(7); b.append32(16)
            }
        }
        for (d, at) in zip(data, offsets) {
            b += [UInt8](repeating: 0, count: at - b.count)
            b += d
        }
        return b
    }
}

/// A typical two-segment kernel: text at 1 MiB (vaddr == paddr), data plus
/// bss at 1 MiB + 8 KiB. The multiboot header starts the text segment.
func sampleKernel(is64: Bool) -> ELFWriter {
    ELFWriter(is64: is64, entry: 0x10_0010, segments: [
        TestSegment(paddr: 0x10_0000, data: pattern(500, seed: 1)),
        TestSegment(paddr: 0x10_2000, data: pattern(300, seed: 2), memsz: 0x1800),
    ])
}

// MARK: Guest memory and loader helpers

let testRAM = 4 << 20

func makeMemory(_ size: Int = testRAM) throws -> GuestMemory { try GuestMemory(size: size) }

/// Fills guest memory with `byte`, so zeroing by the loader is observable.
func dirty(_ memory: GuestMemory, with byte: UInt8 = 0xAA) {
    memory.pointer.initializeMemory(as: UInt8.self, repeating: byte, count: memory.size)
}

extension GuestMemory {
    func u32(_ at: UInt64) -> UInt32 { load(UInt32.self, at: at) ?? 0xDEAD_BEEF }
    func u64(_ at: UInt64) -> UInt64 { load(UInt64.self, at: at) ?? 0xDEAD_BEEF }
    /// The NUL-terminated string at `at` (at most 4 KiB).
    func cString(_ at: UInt64) -> String? {
        var bytes: [UInt8] = []
        var p = at
        while let b = load(UInt8.self, at: p), bytes.count < 4096 {
            if b == 0 { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(b); p += 1
        }
        return nil
    }
    func isZero(at: UInt64, count: Int) -> Bool { read(at: at, count: count).map { $0.allSatisfy { $0 == 0 } } ?? false }
}

func load(_ image: [UInt8], into memory: GuestMemory, commandLine: String = "kernel",
          modules: [BootModule] = []) throws -> BootInfo {
    try MultibootLoader.load(image: image, path: "test.elf", commandLine: commandLine, modules: modules, into: memory)
}

/// Asserts that loading fails with `.badImage` for "test.elf" whose reason contains `text`.
func assertBadImage(_ image: [UInt8], _ text: String, memory: GuestMemory? = nil, modules: [BootModule] = [],
                    file: StaticString = #filePath, line: UInt = #line) {
    do {
        let mem = try memory ?? makeMemory()
        let info = try MultibootLoader.load(image: image, path: "test.elf", commandLine: "k", modules: modules, into: mem)
        XCTFail("expected a bad-image error containing \"\(text)\", loaded with entry \(info.entry)", file: file, line: line)
    } catch let MonitorError.badImage(path, reason) {
        XCTAssertEqual(path, "test.elf", file: file, line: line)
        XCTAssertTrue(reason.contains(text), "reason \"\(reason)\" lacks \"\(text)\"", file: file, line: line)
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}

// MARK: Device helpers

/// A settable clock for the APIC timer.
final class FakeClock {
    var time: UInt64 = 0
}
