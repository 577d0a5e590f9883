import NestedVMX
import VMXArch
import XCTest

/// #DB across VMX transitions (SDM Vol. 3C 27.7.3, 28.2.1, 28.3.4).
final class DebugExceptionTests: XCTestCase {
    func testTheExitQualificationHasB0ToB3BDAndBS() {
        // DR6 after reset is FFFF0FF0H: none of its fixed 1s are reported.
        XCTAssertEqual(DebugExceptions.exitQualification(dr6: 0xffff_0ff0), 0)
        XCTAssertEqual(DebugExceptions.exitQualification(dr6: 0xffff_0ff5), 0x5)
        XCTAssertEqual(DebugExceptions.exitQualification(dr6: 0xffff_6ff8), 0x6008, "BD, BS, B3")
    }

    func testPendingDebugExceptionsAtEntry() {
        var v = VMCS12(address: 0x1000)
        XCTAssertNil(DebugExceptions.pendingAtEntry(v, injecting: false))
        XCTAssertTrue(v.write(.guestPendingDebugExceptions, 1 << 14 | 1 << 12 | 0x3))
        XCTAssertEqual(DebugExceptions.pendingAtEntry(v, injecting: false), 0x5003)
        XCTAssertNil(DebugExceptions.pendingAtEntry(v, injecting: true), "a vectoring entry ignores the field")
        XCTAssertTrue(v.write(.guestPendingDebugExceptions, 1 << 16))
        XCTAssertNil(DebugExceptions.pendingAtEntry(v, injecting: false), "RTM alone is no #DB")
    }

    func testDeliveringAPendingDebugExceptionUpdatesDR6() {
        XCTAssertEqual(DebugExceptions.dr6(0xffff_0ff3, delivering: 1 << 14), 0xffff_4ff0, "B0-B3 replaced, BS added")
        XCTAssertEqual(DebugExceptions.dr6(0xffff_4ff0, delivering: 1 << 12 | 0x4), 0xffff_4ff4, "BS stays, bit 12 is no DR6 bit")
    }

    func testADebugExceptionExitIsRecognised() {
        XCTAssertTrue(NestedExit(reason: .exceptionOrNMI, interruptionInfo: 0x8000_0301).isDebugException)
        XCTAssertFalse(NestedExit(reason: .exceptionOrNMI, interruptionInfo: 0x8000_0306).isDebugException)
        XCTAssertFalse(NestedExit(reason: .hlt).isDebugException)
    }

    /// 28.3.4: the exit saves what is still pending, else 0, whatever L1
    /// wrote before the entry.
    func testTheExitSavesThePendingField() {
        var v = VMCS12(address: 0x1000)
        XCTAssertTrue(v.write(.guestPendingDebugExceptions, 1 << 14))
        let plan = VMTransitions.exit(NestedExit(reason: .hlt), l2: CPUState(), l1: CPUState(), vmcs: v, entryEvent: nil,
                                      halted: false, preemptionTimer: nil, guestMSRs: [], memory: ArrayMemory(size: 0x1000),
                                      maxMSRListEntries: 512)
        XCTAssertEqual(plan.vmcs.read(.guestPendingDebugExceptions), 0)
    }
}
