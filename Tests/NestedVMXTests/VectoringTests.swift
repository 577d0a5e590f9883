import NestedVMX
import VMXArch
import XCTest

/// IDT-vectoring information of an exit during event delivery (SDM Vol. 3C
/// 28.2.4), and the injected event as VMCS12 gives it (27.6).
final class VectoringTests: XCTestCase {
    func vmcs(info: UInt64, errorCode: UInt64 = 0, length: UInt64 = 0) -> VMCS12 {
        var v = VMCS12(address: 0x1000)
        XCTAssertTrue(v.write(.entryInterruptionInfo, info))
        XCTAssertTrue(v.write(.entryExceptionErrorCode, errorCode))
        XCTAssertTrue(v.write(.entryInstructionLength, length))
        return v
    }

    func testTheEntryEventComesFromVMCS12() throws {
        XCTAssertNil(EntryEvent(vmcs: vmcs(info: 0x30), rip: 0), "valid bit clear")
        let gp = try XCTUnwrap(EntryEvent(vmcs: vmcs(info: 1 << 31 | 3 << 8 | 1 << 11 | 13, errorCode: 0x18), rip: 0x100))
        XCTAssertEqual(gp.event, DeliveredEvent(kind: .hardwareException, vector: 13, errorCode: 0x18))
        XCTAssertEqual(gp.rip, 0x100)
        let int = try XCTUnwrap(EntryEvent(vmcs: vmcs(info: 1 << 31 | 4 << 8 | 0x30, length: 2), rip: 0))
        XCTAssertEqual(int.instructionLength, 2)
    }

    func testNothingInDeliveryLeavesTheExitAsItIs() {
        let exit = NestedExit(reason: .eptViolation)
        XCTAssertEqual(StateTransfer.vectoring(exit, inDelivery: nil, entry: nil, rip: 0), exit)
    }

    func testAnEventInDeliveryIsRecorded() {
        let pf = DeliveredEvent(kind: .hardwareException, vector: 14, errorCode: 2)
        let exit = StateTransfer.vectoring(NestedExit(reason: .eptViolation), inDelivery: pf, entry: nil, rip: 0x10)
        XCTAssertEqual(exit.vectoring, pf)
        XCTAssertEqual(exit.vectoring?.interruptionInformation, 0x8000_0b0e)
        // An exit that already carries vectoring information keeps it.
        let nmi = DeliveredEvent(kind: .nmi, vector: 2)
        var preset = NestedExit(reason: .eptViolation)
        preset.vectoring = nmi
        XCTAssertEqual(StateTransfer.vectoring(preset, inDelivery: pf, entry: nil, rip: 0x10).vectoring, nmi)
    }

    func testTheEntrysOwnEventIsRecordedAsL1WroteIt() throws {
        // L1 injected INT1 (privileged software exception, type 5); the vCPU holds it as #DB.
        let entry = try XCTUnwrap(EntryEvent(vmcs: vmcs(info: 1 << 31 | 5 << 8 | 1, length: 1), rip: 0x200))
        let held = DeliveredEvent(kind: .hardwareException, vector: 1)
        let exit = StateTransfer.vectoring(NestedExit(reason: .eptViolation, instructionLength: 0), inDelivery: held,
                                           entry: entry, rip: 0x200)
        XCTAssertEqual(exit.vectoring?.kind, .privilegedSoftwareException)
        XCTAssertEqual(exit.instructionLength, 1, "a software event carries the VM-entry instruction length")
        // Once L2 has moved on, a #DB in delivery is its own.
        let later = StateTransfer.vectoring(NestedExit(reason: .eptViolation), inDelivery: held, entry: entry, rip: 0x300)
        XCTAssertEqual(later.vectoring, held)
        XCTAssertEqual(later.instructionLength, 0)
    }
}
