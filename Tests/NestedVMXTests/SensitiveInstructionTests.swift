import NestedVMX
import VMXArch
import XCTest

/// The SDM rules for L2's sensitive instructions that L0 sees through
/// patched code (docs/PATCHING.md): decoding, which exits L1 gets (26.1.3),
/// their qualifications (Table 28-3, 28.2.1) and RDTSC with TSC offsetting.
final class SensitiveInstructionTests: XCTestCase {
    var long64: CPUState {
        var s = CPUState()
        s.cs.l = true
        s.efer = 0x500
        s.cr0 = 0x8000_0011
        s.cr4 = 0x20
        return s
    }

    func vmcs(_ proc: ProcessorBasedControls) -> VMCS12 {
        var v = VMCS12(address: 0x1000)
        XCTAssertTrue(v.write(.processorBasedControls, UInt64(proc.rawValue)))
        return v
    }

    func testControlRegisterMovesDecode() throws {
        let to = try XCTUnwrap(VMXDecoder.decodeControlRegisterMove([0x0f, 0x22, 0xd8], state: long64))
        XCTAssertEqual(to, ControlRegisterMove(controlRegister: 3, register: 0, toControlRegister: true, length: 3))
        let from = try XCTUnwrap(VMXDecoder.decodeControlRegisterMove([0x41, 0x0f, 0x20, 0xd9], state: long64))
        XCTAssertEqual(from, ControlRegisterMove(controlRegister: 3, register: 9, toControlRegister: false, length: 4))
        XCTAssertNil(VMXDecoder.decodeControlRegisterMove([0x0f, 0x21, 0xd8], state: long64), "MOV from DR")
        XCTAssertEqual(ExitRouting.controlRegisterQualification(from), 0x913, "CR3, MOV from CR, R9")
    }

    func testINVLPGDecodesItsMemoryOperandOnly() throws {
        var s = long64
        s.gprs[.rax] = 0x1000
        let (operand, length) = try XCTUnwrap(VMXDecoder.decodeINVLPG([0x0f, 0x01, 0x78, 0x10], state: s))
        XCTAssertEqual(length, 4)
        XCTAssertEqual(operand.effectiveAddress(state: s, instructionLength: length), 0x1010)
        XCTAssertNil(VMXDecoder.decodeINVLPG([0x0f, 0x01, 0xf8], state: s), "mod 3 is SWAPGS, not INVLPG")
        XCTAssertNil(VMXDecoder.decodeINVLPG([0x0f, 0x01, 0x30], state: s), "/6 is LMSW")
    }

    /// 26.1.3: CR3-load exiting spares the first CR3-target-count target
    /// values (at most 4); CR3-store exiting is separate.
    func testCR3LoadsExitUnlessTheValueIsATarget() {
        var v = vmcs([.cr3LoadExiting])
        XCTAssertTrue(ExitRouting.wantsCR3Move(toCR3: true, value: 0x5000, vmcs: v), "count 0: every load exits")
        XCTAssertFalse(ExitRouting.wantsCR3Move(toCR3: false, value: 0, vmcs: v), "no CR3-store exiting")
        XCTAssertTrue(v.write(.cr3TargetValue1, 0x5000))
        XCTAssertTrue(v.write(.cr3TargetCount, 1))
        XCTAssertTrue(ExitRouting.wantsCR3Move(toCR3: true, value: 0x5000, vmcs: v), "value 1 is beyond the count")
        XCTAssertTrue(v.write(.cr3TargetCount, 2))
        XCTAssertFalse(ExitRouting.wantsCR3Move(toCR3: true, value: 0x5000, vmcs: v))
        XCTAssertFalse(ExitRouting.wantsCR3Move(toCR3: true, value: 0x5000, vmcs: vmcs([])), "no CR3-load exiting")
        XCTAssertTrue(ExitRouting.wantsCR3Move(toCR3: false, value: 0, vmcs: vmcs([.cr3StoreExiting])))
    }

    func testRDTSCAndINVLPGExiting() {
        XCTAssertTrue(ExitRouting.wantsRDTSC(vmcs: vmcs([.rdtscExiting])))
        XCTAssertFalse(ExitRouting.wantsRDTSC(vmcs: vmcs([.useTSCOffsetting])))
        XCTAssertTrue(ExitRouting.wantsINVLPG(vmcs: vmcs([.invlpgExiting])))
        XCTAssertFalse(ExitRouting.wantsINVLPG(vmcs: vmcs([])))
    }

    /// 26.3: the offset is added, wrapping, only under "use TSC offsetting".
    func testTheTSCOffsetAppliesOnlyWhenAsked() {
        var v = vmcs([.useTSCOffsetting])
        XCTAssertTrue(v.write(.tscOffset, UInt64(bitPattern: -100)))
        XCTAssertEqual(ExitRouting.l2TimeStampCounter(l1: 1000, vmcs: v), 900)
        XCTAssertEqual(ExitRouting.l2TimeStampCounter(l1: 1000, vmcs: vmcs([])), 1000)
    }
}
