import KVM
import XCTest
@testable import Monitor

/// EPT02's slot bookkeeping: sorted, binary-searched, ids reused, and the
/// oldest runs evicted when KVM's slots run out (issue: 16k-33k pages used
/// to exhaust them and end the run).
final class SlotMapTests: XCTestCase {
    func slot(_ map: inout SlotMap, _ base: UInt64, _ size: UInt64 = 0x1000) {
        map.insert(SlotMap.Slot(id: map.takeID(), base: base, size: size, l1: base, readOnly: false))
    }

    func testLookupsAndGaps() {
        var map = SlotMap(capacity: 100)
        for base: UInt64 in [0x5000, 0x1000, 0x9000] { slot(&map, base) }
        XCTAssertEqual(map.slots.map(\.base), [0x1000, 0x5000, 0x9000], "kept sorted")
        XCTAssertEqual(map.slot(containing: 0x5fff)?.base, 0x5000)
        XCTAssertNil(map.slot(containing: 0x6000))
        XCTAssertNil(map.slot(containing: 0xfff))
        XCTAssertEqual(map.gap(around: 0x7000).floor, 0x6000)
        XCTAssertEqual(map.gap(around: 0x7000).limit, 0x9000)
        XCTAssertEqual(map.gap(around: 0).floor, 0)
        XCTAssertEqual(map.gap(around: 0xa000).limit, .max)
    }

    func testIDsAreReused() {
        var map = SlotMap(capacity: 100)
        for i in 0..<3 { slot(&map, UInt64(i) * 0x1000) }
        XCTAssertEqual(map.slots.map(\.id).sorted(), [0, 1, 2])
        map.remove(map.slots[1])
        XCTAssertEqual(map.slots.map(\.base), [0, 0x2000])
        map.remove(SlotMap.Slot(id: 7, base: 0x2000, size: 0x1000, l1: 0, readOnly: false))
        XCTAssertEqual(map.slots.map(\.base), [0, 0x2000], "another id at that base is not that slot")
        XCTAssertEqual(map.takeID(), 1, "a freed id comes back first")
        XCTAssertEqual(map.takeID(), 3)
    }

    /// 10,000 scattered pages through an L2 VM with room for 64 slots: the
    /// oldest are evicted, the VM never holds more than 64, ids stay below 64.
    func testAFullMapEvictsTheOldestRuns() throws {
        let clock = ManualClock()
        let vm = FakeVM()
        let l2 = L2Machine((vm, FakeVCPU(clock: clock)), slotCapacity: 64)
        let memory = try GuestMemory(size: 64 << 20)
        var seed: UInt64 = 0x2545_f491_4f6c_dd1d
        for _ in 0..<10_000 {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
            let page = (seed % 16_384) << 12
            if l2.slot(containing: page) == nil {
                try l2.map(base: page, size: 0x1000, l1: page, readOnly: false, memory: memory)
            }
            XCTAssertLessThanOrEqual(vm.slots.count, 64)
        }
        XCTAssertEqual(vm.slots.count, l2.slots.count)
        XCTAssertTrue(vm.slots.allSatisfy { $0.slot < 64 }, "ids are reused")
    }
}
