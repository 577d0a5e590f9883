import XCTest
import CKVM
import NestedVMX
@testable import Monitor

/// KVM's event state read as the event in delivery (SDM 28.2.4 via 25.9.3).
final class CPUStateBridgeTests: XCTestCase {
    func testInjectedEventsBecomeTheEventInDelivery() {
        var e = kvm_vcpu_events()
        XCTAssertNil(DeliveredEvent(e), "nothing injected")

        e.exception.injected = 1; e.exception.nr = 14; e.exception.has_error_code = 1; e.exception.error_code = 6
        XCTAssertEqual(DeliveredEvent(e), DeliveredEvent(kind: .hardwareException, vector: 14, errorCode: 6))
        e.exception.nr = 3; e.exception.has_error_code = 0
        XCTAssertEqual(DeliveredEvent(e), DeliveredEvent(kind: .softwareException, vector: 3), "INT3 is a software exception")

        e = kvm_vcpu_events()
        e.interrupt.injected = 1; e.interrupt.nr = 0x30
        XCTAssertEqual(DeliveredEvent(e), DeliveredEvent(kind: .externalInterrupt, vector: 0x30))
        e.interrupt.soft = 1
        XCTAssertEqual(DeliveredEvent(e)?.interruptionInformation, 0x8000_0430)

        e = kvm_vcpu_events()
        e.nmi.injected = 1
        XCTAssertEqual(DeliveredEvent(e)?.kind, .nmi)
        XCTAssertEqual(CPUState(regs: kvm_regs(), sregs: kvm_sregs(), events: e).eventInDelivery?.vector, 2)
    }
}
