import XCTest
import KVM
import NestedVMX
@testable import Monitor

/// The vCPU's event state read as the event in delivery (SDM 28.2.4 via
/// 25.9.3), and the core's state written back to the vCPU seam's values.
final class CPUStateBridgeTests: XCTestCase {
    func testInjectedEventsBecomeTheEventInDelivery() {
        var e = VCPUEvents()
        XCTAssertNil(DeliveredEvent(e), "nothing injected")

        e.exception = .init(injected: true, vector: 14, errorCode: 6)
        XCTAssertEqual(DeliveredEvent(e), DeliveredEvent(kind: .hardwareException, vector: 14, errorCode: 6))
        e.exception = .init(injected: true, vector: 3)
        XCTAssertEqual(DeliveredEvent(e), DeliveredEvent(kind: .softwareException, vector: 3), "INT3 is a software exception")

        e = VCPUEvents()
        e.interrupt = .init(injected: true, vector: 0x30)
        XCTAssertEqual(DeliveredEvent(e), DeliveredEvent(kind: .externalInterrupt, vector: 0x30))
        e.interrupt.soft = true
        XCTAssertEqual(DeliveredEvent(e)?.interruptionInformation, 0x8000_0430)

        e = VCPUEvents()
        e.nmiInjected = true
        XCTAssertEqual(DeliveredEvent(e)?.kind, .nmi)
        XCTAssertEqual(CPUState(regs: Registers(), sregs: SpecialRegisters(), events: e).eventInDelivery?.vector, 2)
        e.forgetInjectedEvent()
        XCTAssertNil(DeliveredEvent(e))
    }

    func testStateRoundTripsThroughTheSeamsValues() {
        var r = Registers()
        r.rax = 1; r.rcx = 2; r.rdx = 3; r.rbx = 4; r.rsp = 5; r.rbp = 6; r.rsi = 7; r.rdi = 8; r.r15 = 9
        r.rip = 0x1000; r.rflags = 0x202
        var s = SpecialRegisters()
        s.cr0 = 0x8000_0031; s.cr3 = 0x5000; s.cr4 = 0x20; s.efer = 0x500; s.cr8 = 7; s.apicBase = 0xfee0_0900
        s.cs = Segment(base: 0, limit: 0xffff_ffff, selector: 8, type: 0xb, present: true, s: true, l: true, g: true)
        s.tr = Segment(base: 0x7000, limit: 0x67, selector: 0x18, type: 0xb, present: true)
        s.gdt = DescriptorTable(base: 0x6000, limit: 0x1f)
        var e = VCPUEvents()
        e.shadow = [.sti]
        let state = CPUState(regs: r, sregs: s, events: e)
        XCTAssertEqual(state.gprs[.rsp], 5)
        XCTAssertEqual(state.gprs[15], 9)
        XCTAssertTrue(state.blockingBySTI)
        XCTAssertFalse(state.blockingByMovSS)
        XCTAssertTrue(state.mode64)
        var r2 = Registers(), s2 = SpecialRegisters()
        s2.cr8 = 7; s2.apicBase = 0xfee0_0900
        state.store(into: &r2)
        state.store(into: &s2)
        XCTAssertEqual(r2, r)
        XCTAssertEqual(s2, s, "CR8 and the APIC base are the vCPU's own and stay")
    }
}
