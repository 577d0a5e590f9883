import XCTest
import KVM
import NestedVMX
@testable import Monitor

/// `SpecialStateCache`: the `CPUState` it gives is always `CPUState(vcpu)`,
/// however the vCPU's state changed, and one vCPU's conversion never
/// serves another.
final class SpecialStateCacheTests: XCTestCase {
    private func segment(_ selector: UInt16, base: UInt64) -> Segment {
        Segment(base: base, limit: 0xffff_ffff, selector: selector, type: 0xb, present: true, s: true, l: true, g: true)
    }

    func testTheStateFollowsEveryChangeOfTheVCPU() {
        let vcpu = FakeVCPU(clock: ManualClock())
        var cache = SpecialStateCache()
        vcpu.specialRegisters.cs = segment(0x10, base: 0)
        vcpu.specialRegisters.cr3 = 0x1000
        vcpu.registers.rip = 0x1234
        XCTAssertEqual(cache.state(of: vcpu), CPUState(vcpu))
        // The registers and events are read anew every time.
        vcpu.registers.rax = 7
        vcpu.events.shadow = [.sti]
        vcpu.events.exception = VCPUEvents.Exception(injected: true, vector: 14, errorCode: 2)
        XCTAssertEqual(cache.state(of: vcpu), CPUState(vcpu))
        XCTAssertEqual(cache.state(of: vcpu).gprs[.rax], 7)
        // A change of the special registers is seen at once.
        vcpu.specialRegisters.cr3 = 0x2000
        XCTAssertEqual(cache.state(of: vcpu).cr3, 0x2000)
        vcpu.specialRegisters.cs = segment(0x08, base: 0x100)
        XCTAssertEqual(cache.state(of: vcpu), CPUState(vcpu))
        XCTAssertEqual(cache.special.cs.base, 0x100)
    }

    func testAnotherVCPUWithTheSameVersionIsConvertedAgain() {
        let a = FakeVCPU(clock: ManualClock()), b = FakeVCPU(clock: ManualClock())
        a.specialRegisters.cr3 = 0x1000
        b.specialRegisters.cr3 = 0x2000
        XCTAssertEqual(a.specialRegistersVersion, b.specialRegistersVersion)
        var cache = SpecialStateCache()
        XCTAssertEqual(cache.state(of: a).cr3, 0x1000)
        XCTAssertEqual(cache.state(of: b).cr3, 0x2000, "b's version number is a's, but b is not a")
        XCTAssertEqual(cache.state(of: a).cr3, 0x1000)
    }

    /// The fake's version, which the tests above rely on.
    func testTheVersionMovesWithEveryWriteOfTheFake() {
        let vcpu = FakeVCPU(clock: ManualClock())
        let v0 = vcpu.specialRegistersVersion
        _ = vcpu.specialRegisters
        XCTAssertEqual(vcpu.specialRegistersVersion, v0, "a read changes nothing")
        vcpu.specialRegisters.efer = 0x500
        XCTAssertNotEqual(vcpu.specialRegistersVersion, v0)
    }
}
