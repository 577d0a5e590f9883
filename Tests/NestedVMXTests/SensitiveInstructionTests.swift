import NestedVMX
import VMXArch
import XCTest

/// The SDM rules for L2's sensitive instructions that L0 sees through
/// patched code (docs/PATCHING.md): decoding, which exits L1 gets (26.1.3),
/// their qualifications (Table 28-3, 28.2.1) and RDTSC with TSC offsetting.
final class SensitiveInstructionTests: XCTestCase {
    var long64: CPUState { .longMode64 }

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
        XCTAssertTrue(ExitRouting.wantsExit(.rdtsc, vmcs: vmcs([.rdtscExiting])))
        XCTAssertFalse(ExitRouting.wantsExit(.rdtsc, vmcs: vmcs([.useTSCOffsetting])))
        XCTAssertTrue(ExitRouting.wantsExit(.invlpg, vmcs: vmcs([.invlpgExiting])))
        XCTAssertFalse(ExitRouting.wantsExit(.invlpg, vmcs: vmcs([])))
    }

    /// 26.3: the offset is added, wrapping, only under "use TSC offsetting".
    func testTheTSCOffsetAppliesOnlyWhenAsked() {
        var v = vmcs([.useTSCOffsetting])
        XCTAssertTrue(v.write(.tscOffset, UInt64(bitPattern: -100)))
        XCTAssertEqual(ExitRouting.l2TimeStampCounter(l1: 1000, vmcs: v), 900)
        XCTAssertEqual(ExitRouting.l2TimeStampCounter(l1: 1000, vmcs: vmcs([])), 1000)
    }

    /// 26.1.3 and 26.3 with CR0.TS owned by L1 and shadowed set, CR0.NE
    /// owned and shadowed set.
    func testCR0AndCR4ThroughTheMasksAndReadShadows() {
        var v = vmcs([])
        XCTAssertTrue(v.write(.cr0GuestHostMask, 0x28))                       // TS, NE
        XCTAssertTrue(v.write(.cr0ReadShadow, 0x28))
        XCTAssertFalse(ExitRouting.wantsControlRegisterWrite(0, value: 0x8000_0039, vmcs: v), "owned bits as shadowed")
        XCTAssertTrue(ExitRouting.wantsControlRegisterWrite(0, value: 0x8000_0031, vmcs: v), "TS differs from the shadow")
        XCTAssertEqual(ExitRouting.controlRegisterRead(0, actual: 0x8000_0011, vmcs: v), 0x8000_0039, "TS and NE from the shadow")
        XCTAssertEqual(ExitRouting.controlRegisterWritten(0, value: 0x8000_0039 | 1 << 16, current: 0x8000_0031, vmcs: v),
                       0x8001_0031, "owned bits keep their values")
        XCTAssertEqual(ExitRouting.clts(vmcs: v), .exit)
        XCTAssertTrue(v.write(.cr0ReadShadow, 0x20))
        XCTAssertEqual(ExitRouting.clts(vmcs: v), .noChange)
        XCTAssertEqual(ExitRouting.clts(vmcs: vmcs([])), .clearTS)
        XCTAssertFalse(ExitRouting.wantsControlRegisterWrite(4, value: 0x20, vmcs: v), "no CR4 mask")
        XCTAssertEqual(ExitRouting.cltsQualification, 0x20)
    }

    /// 26.3: a CR0 that breaks IA32_VMX_CR0_FIXED0/1 is #GP(0); with
    /// unrestricted guest PE and PG may be clear.
    func testFixedBitsInVMXNonRootOperation() {
        let caps = VMXCapabilities.terrapin()
        XCTAssertFalse(ExitRouting.permitsControlRegister(0, value: 0x8000_0011, capabilities: caps, vmcs: vmcs([])), "NE clear")
        XCTAssertTrue(ExitRouting.permitsControlRegister(0, value: 0x8000_0031, capabilities: caps, vmcs: vmcs([])))
        XCTAssertFalse(ExitRouting.permitsControlRegister(0, value: 0x20, capabilities: caps, vmcs: vmcs([])), "PE, PG clear")
        var unrestricted = vmcs([.activateSecondaryControls])
        XCTAssertTrue(unrestricted.write(.secondaryProcessorBasedControls,
                                         UInt64(SecondaryProcessorBasedControls.unrestrictedGuest.rawValue)))
        XCTAssertTrue(ExitRouting.permitsControlRegister(0, value: 0x20, capabilities: caps, vmcs: unrestricted))
        XCTAssertFalse(ExitRouting.permitsControlRegister(4, value: 1 << 40, capabilities: caps, vmcs: vmcs([])))
    }

    /// The frame a fault pushed is found above the handler's RSP by its RIP
    /// and CS, past an error code and what the handler pushed.
    func testTheFrameOfAFaultIsFoundAboveTheHandlersStack() throws {
        let memory = ArrayMemory(size: 0x10000)
        var s = long64
        s.cr0 = 0x11                                                          // paging off: linear is physical
        s.cr4 = 0
        s.efer = 0x500
        s.gprs[.rsp] = 0x8000
        let words: [UInt64] = [0x13, 0, 0x1234, 0x8, 0x302, 0x9000, 0x10]      // pushed, error code, RIP, CS, RFLAGS, RSP, SS
        for (i, w) in words.enumerated() { XCTAssertTrue(memory.write(0x8000 + UInt64(i) * 8, bytes: (0..<8).map { UInt8(truncatingIfNeeded: w >> (8 * UInt64($0))) })) }
        let (frame, address) = try XCTUnwrap(ExceptionFrame.pushed(for: 0x1234, cs: 0x8, cpu: s, memory: memory))
        XCTAssertEqual(frame.rflags, 0x302)
        XCTAssertEqual(address, 0x8000 + 4 * 8)
        XCTAssertNil(ExceptionFrame.pushed(for: 0x1235, cs: 0x8, cpu: s, memory: memory))
    }

    /// MOV DR (Table 28-4) and WBINVD exiting (26.1.3).
    func testDebugRegisterMovesAndWBINVD() throws {
        let from = try XCTUnwrap(VMXDecoder.decodeDebugRegisterMove([0x0f, 0x21, 0xc3], state: long64))   // mov rbx, dr0
        XCTAssertEqual(ExitRouting.debugRegisterQualification(from), 0x310, "DR0, MOV from DR, RBX")
        let to = try XCTUnwrap(VMXDecoder.decodeDebugRegisterMove([0x0f, 0x23, 0xf8], state: long64))     // mov dr7, rax
        XCTAssertEqual(ExitRouting.debugRegisterQualification(to), 0x7)
        XCTAssertNil(VMXDecoder.decodeDebugRegisterMove([0x0f, 0x22, 0xd8], state: long64), "MOV to CR3")
        XCTAssertTrue(ExitRouting.wantsExit(.movDR, vmcs: vmcs([.movDRExiting])))
        XCTAssertFalse(ExitRouting.wantsExit(.movDR, vmcs: vmcs([])))
        var v = vmcs([.activateSecondaryControls])
        XCTAssertTrue(v.write(.secondaryProcessorBasedControls, UInt64(SecondaryProcessorBasedControls.wbinvdExiting.rawValue)))
        XCTAssertTrue(ExitRouting.wantsExit(.wbinvd, vmcs: v))
        XCTAssertFalse(ExitRouting.wantsExit(.wbinvd, vmcs: vmcs([])))
    }

    /// LMSW and SMSW (26.1.3, 26.3, Table 28-3), with CR0.PE and TS owned.
    func testLMSWAndSMSW() throws {
        let lmsw = try XCTUnwrap(VMXDecoder.decodeMachineStatusWord([0x0f, 0x01, 0xf0], state: long64))   // lmsw ax
        XCTAssertEqual(lmsw, MachineStatusWordAccess(load: true, operand: .register(0), operandSize: 2, length: 3))
        let smsw = try XCTUnwrap(VMXDecoder.decodeMachineStatusWord([0x48, 0x0f, 0x01, 0xe3], state: long64)) // smsw rbx
        XCTAssertEqual(smsw.operandSize, 8)
        XCTAssertFalse(smsw.load)
        XCTAssertNil(VMXDecoder.decodeMachineStatusWord([0x0f, 0x01, 0xf8], state: long64), "/7 is SWAPGS")
        var v = vmcs([])
        XCTAssertTrue(v.write(.cr0GuestHostMask, 0x9))                        // PE, TS
        XCTAssertTrue(v.write(.cr0ReadShadow, 0x0))
        XCTAssertTrue(ExitRouting.wantsLMSW(source: 0x1, vmcs: v), "setting PE, owned and shadowed clear")
        XCTAssertTrue(ExitRouting.wantsLMSW(source: 0x8, vmcs: v), "TS differs from the shadow")
        XCTAssertFalse(ExitRouting.wantsLMSW(source: 0x2, vmcs: v), "MP is not owned")
        XCTAssertEqual(ExitRouting.lmswResult(source: 0x2, current: 0x8000_0031, vmcs: v), 0x8000_0033, "MP loaded, PE kept")
        XCTAssertEqual(ExitRouting.lmswResult(source: 0x0, current: 0x31, vmcs: vmcs([])), 0x31, "PE is never cleared")
        XCTAssertEqual(ExitRouting.lmswQualification(source: 0x8, memory: true), 0x8_0070)
    }
}
