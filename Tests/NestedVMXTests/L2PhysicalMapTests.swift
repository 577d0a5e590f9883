import NestedVMX
import VMXArch
import XCTest

/// The paging strategies L0 builds EPT02 with: identity without EPT, and
/// EPT12 walks with EPT (SDM Vol. 3C 26.6, 29.3).
final class L2PhysicalMapTests: XCTestCase {
    /// EPT12: L2 page 0 -> L1 0x5000, L2 page 1 -> L1 0x3000 (not contiguous), page 2 absent.
    func makeEPT() -> (ArrayMemory, UInt64) {
        let m = ArrayMemory(size: 0x20_0000)
        let rwx: UInt64 = 7, wb: UInt64 = 6 << 3
        _ = m.store(UInt64(0x11000) | rwx, at: 0x10000)
        _ = m.store(UInt64(0x12000) | rwx, at: 0x11000)
        _ = m.store(UInt64(0x13000) | rwx, at: 0x12000)
        _ = m.store(UInt64(0x5000) | rwx | wb, at: 0x13000)
        _ = m.store(UInt64(0x3000) | 1 | wb, at: 0x13008)               // read-only
        return (m, 0x10000 | 6 | 3 << 3)
    }

    func testTheVMCSChoosesTheStrategy() {
        var v = VMCS12(address: 0x1000)
        XCTAssertEqual(L2PhysicalMap(v), .identity)
        _ = v.write(.secondaryProcessorBasedControls, UInt64(SecondaryProcessorBasedControls.enableEPT.rawValue))
        _ = v.write(.eptPointer, 0x10_005e)
        XCTAssertEqual(L2PhysicalMap(v), .identity, "secondary controls count only when activated (SDM 25.6.2)")
        _ = v.write(.processorBasedControls, UInt64(ProcessorBasedControls.activateSecondaryControls.rawValue))
        XCTAssertEqual(L2PhysicalMap(v), .ept(pointer: 0x10_005e))
    }

    func testIdentityIsEveryAddressItself() throws {
        let m = ArrayMemory(size: 0x4000)
        let t = try L2PhysicalMap.identity.translate(0x1234, access: .init(write: true), physicalAddressBits: 40, memory: m).get()
        XCTAssertEqual(t.physical, 0x1234)
        XCTAssertEqual(t.pageBase, 0x1000)
        XCTAssertTrue(t.read && t.write && t.execute)
        _ = m.store(UInt32(0xfeed_beef), at: 0x2ffe)
        XCTAssertEqual(L2PhysicalMap.identity.read(0x2ffe, count: 4, physicalAddressBits: 40, memory: m), [0xef, 0xbe, 0xed, 0xfe])
        XCTAssertNil(L2PhysicalMap.identity.read(0x3ffe, count: 4, physicalAddressBits: 40, memory: m), "past RAM")
    }

    func testEPTReadsFollowEPT12PageByPage() {
        let (m, eptp) = makeEPT()
        let map = L2PhysicalMap.ept(pointer: eptp)
        _ = m.store(UInt16(0x1122), at: 0x5ffe)
        _ = m.store(UInt16(0x3344), at: 0x3000)
        XCTAssertEqual(map.read(0xffe, count: 4, physicalAddressBits: 40, memory: m), [0x22, 0x11, 0x44, 0x33])
        XCTAssertNil(map.read(0x1ffe, count: 4, physicalAddressBits: 40, memory: m), "page 2 is not in EPT12")
        guard case .failure(.violation) = map.translate(0x1000, access: .init(write: true), physicalAddressBits: 40, memory: m) else {
            return XCTFail("a write to a read-only EPT12 page is an EPT violation")
        }
    }
}
