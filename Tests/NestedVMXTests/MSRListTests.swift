import NestedVMX
import VMXArch
import XCTest

/// The MSR lists of VM exit (SDM Vol. 3C 28.4, 28.6): processed in order,
/// the entries before the first bad one take effect, and the bad one is a
/// VMX abort with its indicator (28.7).
final class MSRListTests: XCTestCase {
    let memory = ArrayMemory(size: 0x2_0000)

    func entry(_ i: Int, at base: UInt64, low: UInt64, value: UInt64 = 0) {
        XCTAssertTrue(memory.store(low, at: base + 16 * UInt64(i)))
        XCTAssertTrue(memory.store(value, at: base + 16 * UInt64(i) + 8))
    }

    func testStoreListEntriesInOrder() {
        for i in 0..<3 { entry(i, at: 0x1000, low: 0x174 + UInt64(i)) }
        let plan = MSRLists.store(address: 0x1000, count: 3, maximum: 512, memory: memory)
        XCTAssertNil(plan.abort)
        XCTAssertEqual(plan.entries.map(\.index), [0x174, 0x175, 0x176])
        XCTAssertEqual(plan.entries.map(\.valueAddress), [0x1008, 0x1018, 0x1028])
        XCTAssertEqual(MSRLists.store(address: 0x1000, count: 0, maximum: 512, memory: memory), .init(entries: [], abort: nil))
    }

    func testABadStoreEntryAbortsAfterTheOnesBeforeIt() {
        entry(0, at: 0x1000, low: 0x174)
        entry(1, at: 0x1000, low: 0x1_0000_0175)          // reserved bits 63:32
        entry(2, at: 0x1000, low: 0x176)
        var plan = MSRLists.store(address: 0x1000, count: 3, maximum: 512, memory: memory)
        XCTAssertEqual(plan.entries.map(\.index), [0x174])
        XCTAssertEqual(plan.abort, .savingGuestMSR)
        XCTAssertEqual(plan.abort?.rawValue, 1)
        entry(1, at: 0x1000, low: 0x808)                  // x2APIC TPR
        plan = MSRLists.store(address: 0x1000, count: 3, maximum: 512, memory: memory)
        XCTAssertEqual(plan.abort, .savingGuestMSR)
        entry(1, at: 0x1000, low: 0x9e)                   // IA32_SMBASE outside SMM
        XCTAssertEqual(MSRLists.store(address: 0x1000, count: 3, maximum: 512, memory: memory).entries.count, 1)
    }

    func testAListThatRunsOutOfMemoryAbortsWhereItLeavesRAM() {
        // Two entries fit below the end of memory; the third straddles it.
        let base = UInt64(0x2_0000) - 40
        entry(0, at: base, low: 0x174)
        entry(1, at: base, low: 0x175)
        let store = MSRLists.store(address: base, count: 3, maximum: 512, memory: memory)
        XCTAssertEqual(store.entries.count, 2)
        XCTAssertEqual(store.abort, .savingGuestMSR)
        let load = MSRLists.load(address: base, count: 3, maximum: 512, memory: memory)
        XCTAssertEqual(load.entries.count, 2)
        XCTAssertEqual(load.abort, .loadingHostMSR)
        // A list far past the end (or wrapping around 2^64) loads nothing.
        XCTAssertEqual(MSRLists.load(address: .max - 8, count: 2, maximum: 512, memory: memory),
                       .init(entries: [], abort: .loadingHostMSR))
    }

    func testLoadListFollowsTheEntryRules() {
        entry(0, at: 0x2000, low: 0x174, value: 8)
        entry(1, at: 0x2000, low: 0xc000_0100)            // IA32_FS_BASE: load the VMCS field instead (27.4)
        var plan = MSRLists.load(address: 0x2000, count: 2, maximum: 512, memory: memory)
        XCTAssertEqual(plan.entries.map(\.value), [8])
        XCTAssertEqual(plan.abort, .loadingHostMSR)
        XCTAssertEqual(plan.abort?.rawValue, 4)
        entry(1, at: 0x2000, low: 0x8b, value: 1)         // what L1's WRMSR could not do either
        plan = MSRLists.load(address: 0x2000, count: 2, maximum: 512, memory: memory, wrmsrFaults: { index, _ in index == 0x8b })
        XCTAssertEqual(plan.entries.count, 1)
        XCTAssertEqual(plan.abort, .loadingHostMSR)
        XCTAssertNil(MSRLists.load(address: 0x2000, count: 2, maximum: 512, memory: memory).abort)
    }

    func testAListLongerThanMISCAllowsStopsThere() {
        for i in 0..<600 { entry(i, at: 0x4000, low: 0x174) }
        let plan = MSRLists.load(address: 0x4000, count: 600, maximum: 512, memory: memory)
        XCTAssertEqual(plan.entries.count, 512)
        XCTAssertEqual(plan.abort, .loadingHostMSR)
    }
}
