import Foundation
import XCTest
@testable import Monitor

/// The Zydis sweep of every guest image against binutils' objdump: the same
/// instruction boundaries in every function, and the same sensitive sites
/// (docs/PATCHING.md). The images come from `make -C Guests`, which the
/// test command runs first.
final class CodeSweepTests: XCTestCase {
    static let guests = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Guests/build").standardized

    func images() throws -> [URL] {
        let all = (try? FileManager.default.contentsOfDirectory(at: Self.guests, includingPropertiesForKeys: nil)) ?? []
        let elfs = all.filter { $0.pathExtension == "elf" }.sorted { $0.path < $1.path }
        guard elfs.count >= 10 else {
            XCTFail("no guest images in \(Self.guests.path): run `make -C Guests` (scripts/test does)")
            return []
        }
        return elfs
    }

    /// objdump -d in 64-bit mode: each instruction's address and text.
    func objdump(_ url: URL) throws -> [(address: UInt64, text: String)] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["objdump", "-d", "-m", "i386:x86-64", "--insn-width=15", "--no-show-raw-insn", url.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "objdump \(url.lastPathComponent)")
        var out: [(UInt64, String)] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: "\t", maxSplits: 1)
            guard parts.count == 2, parts[0].hasSuffix(":"),
                  let address = UInt64(parts[0].dropLast().trimmingCharacters(in: .whitespaces), radix: 16) else { continue }
            out.append((address, String(parts[1])))
        }
        return out
    }

    func testTheSweepAgreesWithObjdumpOnEveryGuestImage() throws {
        var functions = 0, sites = 0
        for url in try images() {
            let bytes = [UInt8](try Data(contentsOf: url))
            let image = try ELFImage.parse(bytes, path: url.path)
            XCTAssertFalse(image.functions.isEmpty, url.lastPathComponent)
            XCTAssertTrue(image.segments.allSatisfy { $0.physicalAddress == $0.virtualAddress }, "objdump speaks virtual addresses")
            let sweep = CodeSweep(image: image, bytes: bytes)
            let reference = try objdump(url)
            for f in image.functions {
                let range = f.address..<f.address + f.size
                let ours = sweep.instructions.filter { range.contains($0.address) }.map(\.address)
                let theirs = reference.filter { range.contains($0.address) }.map(\.address)
                XCTAssertEqual(ours, theirs, "\(url.lastPathComponent) \(f.name): instruction boundaries")
                let ourSites = sweep.sites.filter { range.contains($0.address) }.map { "\($0.address) \($0.instruction)" }
                let theirSites = reference.filter { range.contains($0.address) }.compactMap { line in
                    SensitiveInstruction.allCases.first { $0.matches(objdump: line.text) }.map { "\(line.address) \($0)" }
                }
                XCTAssertEqual(ourSites, theirSites, "\(url.lastPathComponent) \(f.name): sensitive sites")
                functions += 1
            }
            sites += sweep.sites.count
            XCTAssertTrue(sweep.sites.allSatisfy { site in
                site.bytes.drop { (0x40...0x4f).contains($0) || $0 == 0x66 || $0 == 0x67 }.starts(with: site.instruction.opcode)
            }, url.lastPathComponent)
        }
        XCTAssertGreaterThan(functions, 100)
        XCTAssertGreaterThan(sites, 20, "CPUID in vmx-selftest, turtle and cpuid-storm; RDTSC in most guests")
    }

    /// An image without a symbol table is swept by executable segment.
    func testAStrippedImageIsSweptBySegment() throws {
        let elf = ELFWriter(is64: true, entry: 0x10_0000,
                            segments: [TestSegment(paddr: 0x10_0000, data: [0x90, 0x0f, 0xa2, 0xf4])],   // nop; cpuid; hlt
                            multiboot: nil)
        let bytes = elf.build()
        let image = try ELFImage.parse(bytes, path: "sample")
        XCTAssertTrue(image.functions.isEmpty)
        let sweep = CodeSweep(image: image, bytes: bytes)
        let base = try XCTUnwrap(image.segments.first { $0.executable }).physicalAddress
        XCTAssertEqual(sweep.sites, [SensitiveSite(address: base + 1, bytes: [0x0f, 0xa2], instruction: .cpuid)])
        XCTAssertEqual(sweep.instructions.map(\.length), [1, 2, 1])
    }
}
