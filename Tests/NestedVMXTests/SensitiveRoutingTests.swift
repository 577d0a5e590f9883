import NestedVMX
import VMXArch
import XCTest

/// Which of L2's sensitive instructions L0 traps under L1's controls, the
/// faults that come before their exits (SDM 26.1.1, 26.3), and the
/// instruction information of the exits that carry it (28.2.5).
final class SensitiveRoutingTests: XCTestCase {
    var long64: CPUState { .longMode64 }

    func vmcs(_ proc: ProcessorBasedControls, _ proc2: SecondaryProcessorBasedControls = []) -> VMCS12 {
        var v = VMCS12(address: 0x1000)
        let primary = proc2.isEmpty ? proc : proc.union(.activateSecondaryControls)
        XCTAssertTrue(v.write(.processorBasedControls, UInt64(primary.rawValue)))
        XCTAssertTrue(v.write(.secondaryProcessorBasedControls, UInt64(proc2.rawValue)))
        return v
    }

    /// With nothing asked for, L0 traps only what always exits or always
    /// needs it: CPUID, INVD, XSETBV, VMCALL, CR0/CR4 writes (the fixed bits), CR8
    /// (L1's TPR), and RDTSCP and INVPCID, which are #UD without their
    /// "enable" controls.
    func testTheTrappedClassesFollowL1sControls() {
        let none = ExitRouting.trapClasses(vmcs: vmcs([]))
        XCTAssertEqual(none, [.cpuid, .invd, .xsetbv, .vmcall, .controlRegisterWrite, .cr8, .rdtscp, .invpcid])
        let enabled = ExitRouting.trapClasses(vmcs: vmcs([], [.enableRDTSCP, .enableINVPCID]))
        XCTAssertEqual(enabled, [.cpuid, .invd, .xsetbv, .vmcall, .controlRegisterWrite, .cr8], "PAUSE and MOV DR cost nothing")
        let all = ExitRouting.trapClasses(vmcs: vmcs([.rdtscExiting, .cr3LoadExiting, .cr3StoreExiting, .movDRExiting, .invlpgExiting,
                                                      .rdpmcExiting, .monitorExiting, .mwaitExiting, .pauseExiting],
                                                     [.wbinvdExiting, .rdrandExiting, .rdseedExiting, .descriptorTableExiting,
                                                      .enableRDTSCP, .enableINVPCID]))
        XCTAssertEqual(all.subtracting([.controlRegisterRead, .lmsw, .clts]),
                       TrapClasses(rawValue: (1 << 24) - 1).subtracting([.controlRegisterRead, .lmsw, .clts]))
        XCTAssertTrue(ExitRouting.trapClasses(vmcs: vmcs([.useTSCOffsetting])).contains(.rdtsc), "the offset needs L0")
        var masked = vmcs([])
        XCTAssertTrue(masked.write(.cr0GuestHostMask, 1 << 3))
        XCTAssertTrue(ExitRouting.trapClasses(vmcs: masked).isSuperset(of: [.clts, .lmsw, .controlRegisterRead]))
        XCTAssertTrue(masked.write(.cr0GuestHostMask, 1 << 16))
        XCTAssertFalse(ExitRouting.trapClasses(vmcs: masked).contains(.lmsw), "WP is beyond LMSW's reach")
    }

    /// Secondary controls count only under "activate secondary controls".
    func testSecondaryControlsNeedTheirActivation() {
        var v = vmcs([])
        XCTAssertTrue(v.write(.secondaryProcessorBasedControls, UInt64(SecondaryProcessorBasedControls.rdrandExiting.rawValue)))
        XCTAssertFalse(ExitRouting.wantsExit(.rdrand, vmcs: v))
        XCTAssertTrue(ExitRouting.wantsExit(.rdrand, vmcs: vmcs([], [.rdrandExiting])))
    }

    func testEachControlDecidesItsExit() {
        let cases: [(TrapClasses, ProcessorBasedControls, SecondaryProcessorBasedControls, VMXExitReason)] = [
            (.rdpmc, .rdpmcExiting, [], .rdpmc), (.monitor, .monitorExiting, [], .monitor), (.mwait, .mwaitExiting, [], .mwait),
            (.pause, .pauseExiting, [], .pause), (.rdrand, [], .rdrandExiting, .rdrand), (.rdseed, [], .rdseedExiting, .rdseed),
            (.descriptorTable, [], .descriptorTableExiting, .gdtrIDTRAccess), (.rdtscp, .rdtscExiting, .enableRDTSCP, .rdtscp),
            (.invpcid, .invlpgExiting, .enableINVPCID, .invpcid),
        ]
        for (c, proc, proc2, reason) in cases {
            XCTAssertTrue(ExitRouting.wantsExit(c, vmcs: vmcs(proc, proc2)), "\(reason)")
            XCTAssertFalse(ExitRouting.wantsExit(c, vmcs: vmcs([])), "\(reason) without its control")
            if reason != .gdtrIDTRAccess { XCTAssertEqual(ExitRouting.exitReason(c), reason) }
        }
        XCTAssertFalse(ExitRouting.wantsExit(.invpcid, vmcs: vmcs(.invlpgExiting)), "INVPCID needs \"enable INVPCID\" too")
        for c: TrapClasses in [.cpuid, .invd, .xsetbv, .vmcall] { XCTAssertTrue(ExitRouting.wantsExit(c, vmcs: vmcs([]))) }
        XCTAssertEqual(ExitRouting.exitReason(.vmcall), .vmcall)
    }

    /// 26.1.1: #UD and privilege faults come before the exit; 26.3: RDTSCP
    /// and INVPCID without their "enable" controls are #UD.
    func testFaultsThatComeBeforeTheExit() {
        let v = vmcs([.rdtscExiting, .rdpmcExiting], [.enableRDTSCP, .enableINVPCID])
        var user = long64
        user.ss.dpl = 3
        XCTAssertNil(ExitRouting.precedence(.rdtsc, state: user, vmcs: v), "CR4.TSD clear")
        user.cr4 |= 1 << 2
        XCTAssertEqual(ExitRouting.precedence(.rdtsc, state: user, vmcs: v), .native, "TSD at CPL 3 is #GP")
        XCTAssertEqual(ExitRouting.precedence(.rdtscp, state: user, vmcs: v), .native)
        XCTAssertNil(ExitRouting.precedence(.rdtsc, state: long64, vmcs: v), "TSD binds CPL > 0 only")
        XCTAssertEqual(ExitRouting.precedence(.rdpmc, state: user, vmcs: v), .native, "CR4.PCE clear")
        user.cr4 |= 1 << 8
        XCTAssertNil(ExitRouting.precedence(.rdpmc, state: user, vmcs: v))
        XCTAssertEqual(ExitRouting.precedence(.invlpg, state: user, vmcs: v), .native)
        XCTAssertEqual(ExitRouting.precedence(.xsetbv, state: long64, vmcs: v), .native, "CR4.OSXSAVE clear is #UD")
        var osxsave = long64
        osxsave.cr4 |= 1 << 18
        XCTAssertNil(ExitRouting.precedence(.xsetbv, state: osxsave, vmcs: v))
        XCTAssertEqual(ExitRouting.precedence(.rdtscp, state: long64, vmcs: vmcs([])), .invalidOpcode)
        XCTAssertEqual(ExitRouting.precedence(.invpcid, state: long64, vmcs: vmcs([])), .invalidOpcode)
        XCTAssertNil(ExitRouting.precedence(.pause, state: user, vmcs: v), "PAUSE at any CPL")
        XCTAssertNil(ExitRouting.precedence(.controlRegisterRead, state: user, vmcs: v), "SMSW at CPL 3 without UMIP")
    }

    /// Tables 28-10 and 28-11.
    func testDescriptorTableInstructionInformation() throws {
        var s = long64
        let sgdt = try XCTUnwrap(VMXDecoder.decodeDescriptorTable([0x0f, 0x01, 0x00], state: s))           // sgdt (%rax)
        XCTAssertEqual(sgdt.table, .gdtr)
        XCTAssertFalse(sgdt.load)
        XCTAssertEqual(sgdt.exitReason, .gdtrIDTRAccess)
        XCTAssertEqual(sgdt.instructionInformation, 0x0041_8900, "64-bit address, DS, no index, base RAX, identity 0")
        let lidt = try XCTUnwrap(VMXDecoder.decodeDescriptorTable([0x0f, 0x01, 0x5b, 0x10], state: s))     // lidt 0x10(%rbx)
        XCTAssertEqual(lidt.instructionInformation, 0x31C1_8900)
        XCTAssertEqual(lidt.qualification(state: s), 0x10)
        XCTAssertEqual(lidt.length, 4)
        let str = try XCTUnwrap(VMXDecoder.decodeDescriptorTable([0x0f, 0x00, 0xc8], state: s))            // str %eax
        XCTAssertEqual(str.exitReason, .ldtrTRAccess)
        XCTAssertEqual(str.instructionInformation, 0x1000_0400)
        XCTAssertEqual(str.qualification(state: s), 0)
        let lldt = try XCTUnwrap(VMXDecoder.decodeDescriptorTable([0x0f, 0x00, 0xd1], state: s))           // lldt %cx
        XCTAssertEqual(lldt.instructionInformation, 0x2000_0408)
        s.rip = 0x10_0000
        let lgdt = try XCTUnwrap(VMXDecoder.decodeDescriptorTable([0x0f, 0x01, 0x15, 0x6f, 0x3f, 0, 0], state: s))   // lgdt 0x3f6f(%rip)
        XCTAssertEqual(lgdt.qualification(state: s), 0x10_0007 + 0x3f6f, "RIP-relative: next RIP plus displacement")
        XCTAssertEqual(lgdt.instructionInformation & (1 << 27 | 1 << 22), 1 << 27 | 1 << 22, "base and index invalid")
        XCTAssertNil(VMXDecoder.decodeDescriptorTable([0x0f, 0x01, 0xd0], state: s), "0F 01 D0 is XGETBV")
        XCTAssertNil(VMXDecoder.decodeDescriptorTable([0x0f, 0x00, 0xe0], state: s), "0F 00 /4 is VERR")
        s.cs.l = false
        s.efer = 0
        s.cs.db = false
        let sgdt16 = try XCTUnwrap(VMXDecoder.decodeDescriptorTable([0x0f, 0x01, 0x07], state: s))         // sgdt [bx]
        XCTAssertEqual(sgdt16.instructionInformation & (1 << 11 | 7 << 7), 0, "16-bit operand and address")
        XCTAssertEqual(ExitRouting.descriptorTablePrecedence(str, state: s), nil, "protected mode, CPL 0")
        s.cr0 = 0
        XCTAssertEqual(ExitRouting.descriptorTablePrecedence(str, state: s), .native, "STR in real mode is #UD")
        var user = long64
        user.ss.dpl = 3
        XCTAssertEqual(ExitRouting.descriptorTablePrecedence(lidt, state: user), .native)
        XCTAssertNil(ExitRouting.descriptorTablePrecedence(sgdt, state: user), "SGDT at CPL 3 without UMIP")
        user.cr4 |= 1 << 11
        XCTAssertEqual(ExitRouting.descriptorTablePrecedence(sgdt, state: user), .native)
    }

    /// Table 28-13 for INVPCID; Table 28-12 for RDRAND and RDSEED.
    func testINVPCIDAndRandomNumberInformation() throws {
        let invpcid = try XCTUnwrap(VMXDecoder.decodeINVPCID([0x66, 0x0f, 0x38, 0x82, 0x18], state: long64))  // invpcid (%rax),%rbx
        XCTAssertEqual(invpcid.typeRegister, 3)
        XCTAssertEqual(invpcid.instructionInformation, 0x3041_8100)
        XCTAssertEqual(invpcid.length, 5)
        XCTAssertNil(VMXDecoder.decodeINVPCID([0x0f, 0x38, 0x82, 0x18], state: long64), "66 is mandatory")
        XCTAssertNil(VMXDecoder.decodeINVPCID([0x66, 0x0f, 0x38, 0x82, 0xd8], state: long64), "memory operand only")
        let rdrand = try XCTUnwrap(VMXDecoder.decodeRandomNumber([0x0f, 0xc7, 0xf0], state: long64))          // rdrand %eax
        XCTAssertEqual(rdrand.instructionInformation, 0x800)
        let r9 = try XCTUnwrap(VMXDecoder.decodeRandomNumber([0x49, 0x0f, 0xc7, 0xf1], state: long64))        // rdrand %r9
        XCTAssertEqual(r9.instructionInformation, 0x1048)
        let ax = try XCTUnwrap(VMXDecoder.decodeRandomNumber([0x66, 0x0f, 0xc7, 0xf8], state: long64))        // rdseed %ax
        XCTAssertEqual(ax.instructionInformation, 0)
        XCTAssertEqual(ax.length, 4)
        XCTAssertNil(VMXDecoder.decodeRandomNumber([0xf3, 0x0f, 0xc7, 0xf8], state: long64), "F3 0F C7 /7 is RDPID")
        XCTAssertNil(VMXDecoder.decodeRandomNumber([0x0f, 0xc7, 0x30], state: long64), "0F C7 /6 memory is VMPTRLD")
    }

    /// CR8 is TPR bits 7:4 (Vol. 3A 11.8.6.1); bits 63:4 of a write are #GP.
    func testCR8IsTheTaskPriorityClass() {
        XCTAssertEqual(ExitRouting.cr8(fromTPR: 0x5f), 5)
        XCTAssertEqual(ExitRouting.tpr(fromCR8: 0xa), 0xa0)
        XCTAssertNil(ExitRouting.tpr(fromCR8: 0x10))
        XCTAssertTrue(ExitRouting.wantsCR8Move(toCR8: true, vmcs: vmcs(.cr8LoadExiting)))
        XCTAssertFalse(ExitRouting.wantsCR8Move(toCR8: false, vmcs: vmcs(.cr8LoadExiting)))
        XCTAssertTrue(ExitRouting.wantsCR8Move(toCR8: false, vmcs: vmcs(.cr8StoreExiting)))
        let move = ControlRegisterMove(controlRegister: 8, register: 1, toControlRegister: false, length: 4)
        XCTAssertEqual(ExitRouting.controlRegisterQualification(move), 0x118, "CR8, MOV from CR, RCX")
    }
}
