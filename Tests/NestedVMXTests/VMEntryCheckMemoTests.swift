@testable import NestedVMX
import VMXArch
import XCTest

/// `VMEntryChecker.check(_:memo:)`: the VM-entry checks (SDM Vol. 3C
/// 27.2-27.4) re-run only where their inputs changed, with the same first
/// failure as running every check.
final class VMEntryCheckMemoTests: XCTestCase {
    /// `FieldSet(differencesOf:)` skips runs of equal slots: it must still
    /// name exactly the slots that differ, wherever they are.
    func testFieldSetDifferencesAreExactlyTheChangedSlots() {
        var rng = SystemRandomNumberGenerator()
        for count in [0, 1, 7, 8, 9, 63, 64, 65, 170, 256] {
            for _ in 0..<50 {
                let a = (0..<count).map { _ in UInt64.random(in: 0...3, using: &rng) }
                var b = a
                for i in b.indices where Int.random(in: 0..<10, using: &rng) == 0 { b[i] &+= 1 }
                var expected = FieldSet()
                for i in 0..<count where a[i] != b[i] { expected.insert(i) }
                let got = FieldSet(differencesOf: a, b)
                XCTAssertTrue(got.bits == expected.bits, "count \(count)")
            }
        }
    }

    typealias Fixture = EntryCheckTests.Fixture

    func check(_ f: Fixture, launch: Bool = false, memo: inout EntryCheckMemo) -> VMEntryFailure? {
        let failure = VMEntryChecker.check(EntryContext(vmcs: f.vmcs, capabilities: f.caps, memory: f.memory, launch: launch,
                                                        platform: f.platform), memo: &memo)
        // The inverted index that finds the checks to re-run says what the reads say.
        if memo.key != nil { XCTAssertTrue(memo.indexMatchesReads, "the memo's index is stale") }
        return failure
    }

    /// The checks whose last evaluation read memory: re-run at every entry.
    func memoryReaders(_ memo: EntryCheckMemo) -> Int { memo.readsMemory.filter { $0 }.count }

    func testAnUnchangedEntryRunsOnlyTheChecksThatReadMemory() {
        let f = EntryCheckTests.baseline()
        var memo = EntryCheckMemo()
        XCTAssertNil(check(f, memo: &memo))
        XCTAssertEqual(memo.evaluated, VMEntryChecker.checks.count, "the first entry runs every check")
        XCTAssertNil(check(f, memo: &memo))
        XCTAssertEqual(memo.evaluated, memoryReaders(memo))
        XCTAssertLessThan(memo.evaluated, 5)
    }

    func testAChangedFieldRerunsTheChecksThatReadIt() {
        var f = EntryCheckTests.baseline()
        var memo = EntryCheckMemo()
        XCTAssertNil(check(f, memo: &memo))
        f[.guestRIP] = 0x20_0000
        XCTAssertNil(check(f, memo: &memo))
        let rip = memo.evaluated - memoryReaders(memo)
        XCTAssertGreaterThan(rip, 0, "the RIP checks ran")
        XCTAssertLessThan(rip, 6, "and few others")
        f[.guestRIP] = 0x8000_0000_0000_0000         // not canonical, in a 64-bit guest (27.3.1.4)
        let fresh = f.check(launch: false)
        XCTAssertNotNil(fresh)
        XCTAssertEqual(check(f, memo: &memo), fresh)
        XCTAssertEqual(check(f, memo: &memo), fresh, "a failure is not remembered as a pass")
        f[.guestRIP] = 0x20_0000
        XCTAssertNil(check(f, memo: &memo))
        XCTAssertEqual(memo.evaluated, VMEntryChecker.checks.count, "after a failure every check runs again")
    }

    /// The MSR-load list is in L1's memory (27.4): an entry L1 rewrites with
    /// no VMWRITE still fails the next entry.
    func testMemoryIsReadAgainAtEveryEntry() {
        var f = EntryCheckTests.baseline()
        f[.entryMSRLoadCount] = 1
        f[.entryMSRLoadAddress] = 0xc000
        f.msrEntry(0, at: 0xc000, index: 0x277, value: EntryCheckTests.pat)
        var memo = EntryCheckMemo()
        XCTAssertNil(check(f, memo: &memo))
        XCTAssertNil(check(f, memo: &memo))
        f.msrEntry(0, at: 0xc000, index: 0xc000_0100)  // FS base: refused (27.4)
        XCTAssertEqual(check(f, memo: &memo), .msrLoad(index: 1))
    }

    func testTheKeyOutsideTheVMCSIsCompared() {
        var f = EntryCheckTests.baseline()
        var memo = EntryCheckMemo()
        XCTAssertNil(check(f, memo: &memo))
        f.platform.processorInIA32eMode = false      // 27.2.4: a 32-bit L1 with a 64-bit host state
        XCTAssertEqual(check(f, memo: &memo), f.check(launch: false))
        XCTAssertNotNil(f.check(launch: false))
        f.platform.processorInIA32eMode = true
        XCTAssertNil(check(f, memo: &memo))
        // Another VMCS with the same values: every check runs.
        var other = VMCS12(address: 0xa000)
        for field in VMCSField.allFields { other.write(field, f[field]) }
        f.vmcs = other
        XCTAssertNil(check(f, memo: &memo))
        XCTAssertEqual(memo.evaluated, VMEntryChecker.checks.count)
    }

    /// A seeded random walk near the baseline: fields set to 0, all ones,
    /// a flipped bit, a random value or back to the baseline; the MSR-load
    /// list, L1's mode and the launch flag changing too. At every step the
    /// memo's answer is the full run's.
    func testTheMemoAgreesWithTheFullRunOnARandomWalk() {
        let baseline = EntryCheckTests.baseline()
        var f = baseline
        var rng = XorShift64(seed: 0x5eed_e17e)
        var memo = EntryCheckMemo()
        var passes = 0, skipped = 0
        let fields = VMCSField.allFields
        for step in 0..<4000 {
            let field = rng.pick(fields)
            switch rng.below(8) {
            case 0: f[field] = 0
            case 1: f.vmcs.write(field, .max)
            case 2: f[field] = f[field] ^ 1 << UInt64(rng.below(64))
            case 3: f[field] = rng.next()
            case 4:
                f.msrEntry(rng.below(2), at: 0xc000, index: rng.oneIn(2) ? 0x277 : UInt64(rng.pick([0x174, 0xc000_0100, 0x1_0000_0277])),
                           value: rng.oneIn(2) ? EntryCheckTests.pat : rng.next())
                if rng.oneIn(2) { f[.entryMSRLoadAddress] = 0xc000; f[.entryMSRLoadCount] = UInt64(rng.below(3)) }
            case 5: f.platform.processorInIA32eMode = !rng.oneIn(4)
            default:
                // Back to the baseline, mostly: the walk stays near valid states.
                for g in fields where rng.oneIn(3) { f[g] = baseline[g] }
            }
            let launch = rng.oneIn(5)
            let expected = f.check(launch: launch)
            XCTAssertEqual(check(f, launch: launch, memo: &memo), expected, "step \(step), \(field)")
            if expected == nil {
                passes += 1
                skipped += VMEntryChecker.checks.count - memo.evaluated
            }
        }
        XCTAssertGreaterThan(passes, 200, "the walk reaches valid states often enough to test the memo")
        XCTAssertGreaterThan(skipped, passes * VMEntryChecker.checks.count / 2, "and the memo skipped most checks on them")
    }
}

extension VMEntryCheckMemoTests {
    /// RFLAGS' arithmetic flags change at nearly every exit: the checks
    /// that test only RFLAGS.VM (the segment rules of 27.3.1.2) do not run
    /// again for them, and do when VM changes.
    func testTheArithmeticFlagsDoNotRerunTheSegmentChecks() {
        var f = EntryCheckTests.baseline()
        var memo = EntryCheckMemo()
        XCTAssertNil(check(f, memo: &memo))
        f[.guestRFLAGS] = 0x2 | 1 << 6 | 1 << 0        // ZF, CF
        XCTAssertNil(check(f, memo: &memo))
        let flags = memo.evaluated - memoryReaders(memo)
        XCTAssertEqual(flags, 1, "only the reserved-bits check reads all of RFLAGS")
        f[.guestRFLAGS] = 0x2 | 1 << 17                 // VM in a 64-bit guest (27.3.1.4)
        XCTAssertEqual(check(f, memo: &memo), f.check(launch: false))
        XCTAssertNotNil(f.check(launch: false))
    }

    func testThePartsFitTheFieldSet() {
        XCTAssertLessThanOrEqual(VMCSField.allFields.count + FieldPart.allCases.count, 64 * FieldSet.words)
    }
}
