import Foundation
@testable import FuzzTargets
import NestedVMX
import XCTest

/// The committed fuzz inputs, replayed through their targets in an
/// ordinary build: the corpus (Fuzz/corpus) and every crash found so far
/// (Fuzz/regressions). A broken invariant or a runtime trap ends the test
/// process, which fails the run.
final class FuzzCorpusTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Fuzz").standardized

    func inputs(_ kind: String, _ target: FuzzTarget) throws -> [URL] {
        let dir = Self.root.appendingPathComponent(kind).appendingPathComponent(target.rawValue)
        guard FileManager.default.fileExists(atPath: dir.path) else { return [] }
        return try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil).sorted { $0.path < $1.path }
    }

    func testEveryTargetHasACorpus() throws {
        for target in FuzzTarget.allCases {
            XCTAssertFalse(try inputs("corpus", target).isEmpty, "no corpus for \(target.rawValue)")
        }
    }

    func testCorpusAndRegressionsReplay() throws {
        var replayed = 0
        for target in FuzzTarget.allCases {
            for file in try inputs("corpus", target) + inputs("regressions", target) {
                target.run([UInt8](try Data(contentsOf: file)))
                replayed += 1
            }
        }
        XCTAssertGreaterThan(replayed, FuzzTarget.allCases.count)
    }

    /// The VMCS seeds are regions that pass every VM-entry check, so that
    /// the fuzzer starts past the checks, not in front of the first one.
    func testVMCSSeedsPassTheEntryChecks() throws {
        let seeds = try inputs("corpus", .vmcsEntry).filter { ["baseline-64bit-l2", "pae-l2-32bit-host"].contains($0.lastPathComponent) }
        XCTAssertEqual(seeds.count, 2)
        for seed in seeds {
            let bytes = [UInt8](try Data(contentsOf: seed))
            let memory = FuzzCPU.memory(Array(bytes.prefix(VMCS12Layout.regionSize)))
            let vmcs = try XCTUnwrap(VMCSTargets.load(memory), seed.lastPathComponent)
            let host32 = bytes.count > VMCS12Layout.regionSize + 1 && bytes[VMCS12Layout.regionSize + 1] & 1 != 0
            let failure = VMEntryChecker.check(vmcs, capabilities: .terrapin(), memory: memory, launch: true,
                                               platform: EntryPlatform(processorInIA32eMode: !host32))
            XCTAssertNil(failure, seed.lastPathComponent)
        }
    }

    func testInputReadsPastTheEndAsZero() {
        var input = FuzzInput([0x34, 0x12])
        XCTAssertEqual(input.integer() as UInt32, 0x1234)
        XCTAssertTrue(input.isAtEnd)
        XCTAssertEqual(input.take(3), [0, 0, 0])
        XCTAssertEqual(input.rest(), [])
    }
}
