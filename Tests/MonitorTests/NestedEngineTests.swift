import Foundation
import KVM
import NestedVMX
import VMXArch
import XCTest
@testable import Monitor

/// L0's nested paths driven by synthetic exits on fake vCPUs and a manual
/// clock: no /dev/kvm. L2 is a flat 32-bit protected-mode guest, paging
/// off, whose EPT12 maps L2-physical [0, 2 MiB) onto L1-physical
/// [4 MiB, 6 MiB) with one 2 MiB leaf (SDM Vol. 3C 29.3.2).
final class NestedEngineTests: XCTestCase {
    enum L {
        static let l2Base: UInt64 = 0x40_0000       // L1-physical of L2-physical 0
        static let pml4: UInt64 = 0x1_0000, pdpt: UInt64 = 0x1_1000, pd: UInt64 = 0x1_2000
        static let eptp: UInt64 = pml4 | 6 | 3 << 3
        static let code: UInt64 = 0x1000, handler: UInt64 = 0x1800
        static let idt: UInt64 = 0x2000, gdt: UInt64 = 0x3000, tss: UInt64 = 0x4000, stack: UInt64 = 0x8000
        static let hostRIP: UInt64 = 0x10_0500, hostRSP: UInt64 = 0x9000
    }

    var hv: FakeHypervisor!
    var machine: Machine!
    var imagePath = ""

    override func setUpWithError() throws {
        hv = FakeHypervisor()
        imagePath = NSTemporaryDirectory() + "terrapin-nested-engine-\(ProcessInfo.processInfo.processIdentifier).elf"
        XCTAssertTrue(FileManager.default.createFile(atPath: imagePath, contents: Data(sampleKernel(is64: false).build())))
        var config = MachineConfig(imagePath: imagePath)
        config.memorySize = 8 << 20
        machine = try Machine(config: config, clock: hv.clock, hypervisor: hv)
        buildL2Memory()
    }

    override func tearDown() {
        machine = nil
        try? FileManager.default.removeItem(atPath: imagePath)
    }

    // MARK: Fixture

    func store<T: FixedWidthInteger>(_ value: T, l2 address: UInt64) {
        XCTAssertTrue(machine.ram.store(value, at: L.l2Base + address))
    }

    func storeBytes(_ bytes: [UInt8], l2 address: UInt64) {
        for (i, b) in bytes.enumerated() { store(b, l2: address + UInt64(i)) }
    }

    /// EPT12, L2's GDT (flat code 0x08, data 0x10, TSS 0x18) and its IDT with
    /// a 32-bit interrupt gate for #UD at `L.handler`.
    func buildL2Memory() {
        let ram = machine.ram
        XCTAssertTrue(ram.store(L.pdpt | 7, at: L.pml4))
        XCTAssertTrue(ram.store(L.pd | 7, at: L.pdpt))
        XCTAssertTrue(ram.store(L.l2Base | 7 | 6 << 3 | 1 << 7, at: L.pd))          // 2 MiB, RWX, WB
        store(UInt64(0x00cf_9b00_0000_ffff), l2: L.gdt + 8)
        store(UInt64(0x00cf_9300_0000_ffff), l2: L.gdt + 16)
        store(UInt64(0x0000_8b00_4000_0067), l2: L.gdt + 24)
        store(L.handler | 0x8 << 16 | 0x8e << 40, l2: L.idt + 6 * 8)
    }

    /// A VMCS12 for that L2, entered from a 64-bit L1 host state.
    func vmcs(pin: PinBasedControls = [], proc: ProcessorBasedControls = [.hltExiting, .unconditionalIOExiting],
              exit: VMExitControls = [.acknowledgeInterruptOnExit]) -> VMCS12 {
        var v = VMCS12(address: 0x2_0000)
        func w(_ f: VMCSField, _ value: UInt64) { XCTAssertTrue(v.write(f, value), "\(f)") }
        w(.pinBasedControls, UInt64(pin.union(.externalInterruptExiting).rawValue) | 0x16)
        w(.processorBasedControls, UInt64(proc.union(.activateSecondaryControls).rawValue))
        w(.secondaryProcessorBasedControls, UInt64(([.enableEPT, .unrestrictedGuest] as SecondaryProcessorBasedControls).rawValue))
        w(.exitControls, UInt64(exit.union(.hostAddressSpaceSize).rawValue))
        w(.entryControls, 0)
        w(.eptPointer, L.eptp)
        w(.vmcsLinkPointer, .max)
        w(.hostCR0, 0x8005_0033); w(.hostCR3, 0x5000); w(.hostCR4, 0x20)
        w(.hostCSSelector, 0x08); w(.hostSSSelector, 0x10); w(.hostDSSelector, 0x10); w(.hostESSelector, 0x10)
        w(.hostTRSelector, 0x18); w(.hostRIP, L.hostRIP); w(.hostRSP, L.hostRSP)
        w(.guestCR0, 0x31)
        w(.guestCSSelector, 0x08); w(.guestCSLimit, 0xffff_ffff); w(.guestCSAccessRights, 0xc09b)
        for (sel, limit, ar): (VMCSField, VMCSField, VMCSField) in [
            (.guestSSSelector, .guestSSLimit, .guestSSAccessRights), (.guestDSSelector, .guestDSLimit, .guestDSAccessRights),
            (.guestESSelector, .guestESLimit, .guestESAccessRights), (.guestFSSelector, .guestFSLimit, .guestFSAccessRights),
            (.guestGSSelector, .guestGSLimit, .guestGSAccessRights),
        ] { w(sel, 0x10); w(limit, 0xffff_ffff); w(ar, 0xc093) }
        w(.guestLDTRAccessRights, 1 << 16)
        w(.guestTRSelector, 0x18); w(.guestTRBase, L.tss); w(.guestTRLimit, 0x67); w(.guestTRAccessRights, 0x8b)
        w(.guestGDTRBase, L.gdt); w(.guestGDTRLimit, 0x1f); w(.guestIDTRBase, L.idt); w(.guestIDTRLimit, 0xff)
        w(.guestRIP, L.code); w(.guestRSP, L.stack); w(.guestRFLAGS, 0x2)
        return v
    }

    /// L1 in VMX root operation with `v` current executes VMLAUNCH.
    func launch(_ v: VMCS12, file: StaticString = #filePath, line: UInt = #line) {
        machine.vmx.vmxe = true
        machine.vmx.inVMXOperation = true
        machine.vmx.current = v
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: true, note: &note), file: file, line: line)
        XCTAssertEqual(machine.activeLevel, 2, "L2 runs next", file: file, line: line)
    }

    func field(_ f: VMCSField) -> UInt64? { machine.vmx.current?.read(f) }

    /// One step of the run loop, which must not end the run.
    func step(file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertNil(try machine.step(), file: file, line: line)
    }

    /// L0 reflected an exit with `reason` to L1: L1 runs at its host state.
    func assertReflected(_ reason: VMXExitReason, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(machine.activeLevel, 1, "L1 runs next", file: file, line: line)
        XCTAssertEqual(field(.exitReason), UInt64(reason.rawValue), "exit reason", file: file, line: line)
        XCTAssertEqual(hv.l1.registers.rip, L.hostRIP, "L1 at its host RIP", file: file, line: line)
        XCTAssertEqual(hv.l1.registers.rsp, L.hostRSP, "L1 at its host RSP", file: file, line: line)
        XCTAssertEqual(hv.l1.specialRegisters.cr3, 0x5000, "L1's host CR3", file: file, line: line)
    }

    // MARK: Entry

    func testEntryLoadsL2AndBuildsEPT02() throws {
        launch(vmcs())
        XCTAssertEqual(hv.l2VMsMade, 1)
        XCTAssertEqual(hv.l2.registers.rip, L.code)
        XCTAssertEqual(hv.l2.registers.rsp, L.stack)
        XCTAssertEqual(hv.l2.specialRegisters.cs.selector, 0x08)
        XCTAssertEqual(hv.l2.specialRegisters.idt, DescriptorTable(base: L.idt, limit: 0xff))
        // The first fetch's run is in EPT02 before L2 runs: L2-physical 0 onto L1 4 MiB.
        XCTAssertTrue(hv.l2VM.slots.contains { slot in
            slot.at <= L.code && L.code - slot.at < UInt64(slot.size) && UInt64(slot.offset) + (L.code - slot.at) == L.l2Base + L.code
        }, "\(hv.l2VM.slots)")
        XCTAssertGreaterThan(hv.l2VM.filters, 0, "L1's MSR bitmaps became L2's MSR filter")
    }

    // MARK: VMCALL in unswept code (docs/PATCHING.md)

    /// Builds the machine again with `trap` for VMCALL in unswept code.
    func useVMCALLTrap(_ trap: L2VMCALLTrap) throws {
        hv = FakeHypervisor()
        var config = MachineConfig(imagePath: imagePath)
        config.memorySize = 8 << 20
        config.l2VMCALLTrap = trap
        machine = try Machine(config: config, clock: hv.clock, hypervisor: hv)
        buildL2Memory()
    }

    /// The debug registers armed on L2's vCPU last, if any breakpoint is.
    var l2HardwareBreakpoints: [UInt64]? {
        guard let last = hv.l2.guestDebug.last, last.control.contains(.useHardwareBreakpoints) else { return nil }
        return last.registers
    }

    /// Before L2 runs, the handler trap (the default) puts INT3 on the
    /// first byte of L2's #UD handler in L2's copy of its page; L1's page
    /// keeps its bytes, and no breakpoint is armed.
    func testTheHandlerTrapIsAnINT3InL2sCopyOfTheHandlersPage() throws {
        storeBytes([0x90, 0xcf], l2: L.handler)                                // nop; iret
        launch(vmcs())
        hv.l2.script = [FakeRun(exit: .irqWindowOpen)]
        XCTAssertNil(try machine.step())
        XCTAssertEqual(hv.l2VM.read(L.handler, count: 2), [0xcc, 0xcf], "L2 runs the copy")
        XCTAssertEqual(machine.ram.read(L.l2Base + L.handler, count: 2), [0x90, 0xcf], "L1's page is untouched")
        XCTAssertEqual(hv.l2VM.slots.first { $0.at == L.handler & ~0xfff }?.size, 4096, "the copy is a page of its own")
        XCTAssertTrue(hv.l2VM.read(0, count: 1) != nil && hv.l2VM.read(0x2000, count: 1) != nil, "the rest stays mapped")
        XCTAssertNil(l2HardwareBreakpoints, "nothing armed")
    }

    /// `--l2-vmcall-trap breakpoint`: DR0 on L2's #UD handler instead.
    func testTheBreakpointModeArmsADebugRegisterOnTheHandler() throws {
        try useVMCALLTrap(.breakpoint)
        storeBytes([0x90, 0xcf], l2: L.handler)
        launch(vmcs())
        hv.l2.script = [FakeRun(exit: .irqWindowOpen)]
        XCTAssertNil(try machine.step())
        XCTAssertEqual(l2HardwareBreakpoints?.first, L.handler)
        XCTAssertEqual(hv.l2VM.read(L.handler, count: 1), [0x90], "no copy")
    }

    /// L2's next run stops at its #UD handler with a 32-bit #UD frame for
    /// `L.code` pushed, as KVM delivers it: at the trap's INT3, or at the
    /// breakpoint's debug exit.
    func scriptStopAtUDHandler(by trap: L2VMCALLTrap) {
        let frameAt = L.stack - 12
        store(UInt32(L.code), l2: frameAt)
        store(UInt32(0x08), l2: frameAt + 4)
        store(UInt32(0x2), l2: frameAt + 8)
        let stop: VCPUExit = trap == .handler
            ? .internalError(InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xcc])))
            : .debug(DebugExit(exception: 1, pc: L.handler, dr6: 1, dr7: 0x3))
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.handler); $0.registers.rsp = frameAt }, exit: stop)]
    }

    /// KVM turned VMCALL into #UD, delivered: L2 stops at the handler with
    /// the frame pushed, by the trap's INT3 or by the breakpoint. Either way
    /// L1 gets exit 18 with the delivery unwound (SDM 26.1.2).
    func testVMCALLAtL2sUDHandlerIsReflected() throws {
        for trap in [L2VMCALLTrap.handler, .breakpoint] {
            try useVMCALLTrap(trap)
            storeBytes([0x0f, 0x01, 0xc1], l2: L.code)
            launch(vmcs())
            scriptStopAtUDHandler(by: trap)
            try step()
            assertReflected(.vmcall)
            XCTAssertEqual(field(.exitInstructionLength), 3, "\(trap)")
            XCTAssertEqual(field(.guestRIP), L.code, "the delivery was unwound")
            XCTAssertEqual(field(.guestRSP), L.stack)
        }
    }

    /// A #UD of L2's own (UD2) at the handler trap: L2's handler runs, its
    /// first instruction stepped from L1's page, and the INT3 is back after
    /// the step.
    func testL2sOwnUDAtTheHandlerTrapRunsItsHandler() throws {
        storeBytes([0x0f, 0x0b], l2: L.code)                                   // ud2
        storeBytes([0x90, 0xcf], l2: L.handler)
        launch(vmcs())
        scriptStopAtUDHandler(by: .handler)
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "no exit: L1 does not intercept #UD")
        XCTAssertEqual(hv.l2VM.read(L.handler, count: 1), [0x90], "L1's page for the step")
        XCTAssertTrue(hv.l2.guestDebug.last?.control.contains(.singleStep) ?? false)
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.handler + 1) },
                                exit: .debug(DebugExit(exception: 1, pc: L.handler + 1, dr6: 0x4000, dr7: 0)))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2)
        XCTAssertEqual(hv.l2VM.read(L.handler, count: 1), [0xcc], "the trap is back")
        XCTAssertFalse(hv.l2.guestDebug.last?.control.contains(.singleStep) ?? true)
    }

    /// A #UD that L1 injects is delivered, not intercepted again, and is no
    /// VMCALL even when its frame points at one (a hypervisor answering a
    /// VMCALL it does not support with #UD): L2's handler runs. Both traps.
    func testAnInjectedUDAtAVMCALLIsNoVMCALLExit() throws {
        for trap in [L2VMCALLTrap.handler, .breakpoint] {
            try useVMCALLTrap(trap)
            storeBytes([0x0f, 0x01, 0xc1], l2: L.code)
            storeBytes([0x90, 0xcf], l2: L.handler)
            var v = vmcs()
            XCTAssertTrue(v.write(.entryInterruptionInfo, 1 << 31 | 3 << 8 | 6))    // #UD, hardware exception
            launch(v)
            scriptStopAtUDHandler(by: trap)
            try step()
            XCTAssertEqual(machine.activeLevel, 2, "\(trap): L2's handler takes L1's #UD")
            XCTAssertTrue(hv.l2.guestDebug.last?.control.contains(.singleStep) ?? false, "\(trap)")
        }
    }

    /// A #UD handler in a DPL-3 code segment would meet the INT3 at CPL 3,
    /// where it is a #BP through L2's IDT: the breakpoint serves instead.
    func testAUDHandlerOutsideCPL0KeepsTheBreakpoint() throws {
        storeBytes([0x90, 0xcf], l2: L.handler)
        store(UInt64(0x00cf_fb00_0000_ffff), l2: L.gdt + 32)                      // 0x20: 32-bit code, DPL 3
        store(L.handler | 0x23 << 16 | 0xee << 40, l2: L.idt + 6 * 8)
        var v = vmcs()
        XCTAssertTrue(v.write(.guestGDTRLimit, 0x27))
        launch(v)
        hv.l2.script = [FakeRun(exit: .irqWindowOpen)]
        XCTAssertNil(try machine.step())
        XCTAssertEqual(l2HardwareBreakpoints?.first, L.handler)
        XCTAssertEqual(hv.l2VM.read(L.handler, count: 1), [0x90], "no INT3")
    }

    /// Where L1 intercepts #UD, its breakpoint watches the handler, which
    /// then has no INT3; L2 writing to the handler's page ends the trap
    /// too. Each time the breakpoint catches VMCALL instead.
    func testTheHandlerTrapGivesWayToTheBreakpoint() throws {
        storeBytes([0x90, 0xcf], l2: L.handler)
        var v = vmcs()
        XCTAssertTrue(v.write(.exceptionBitmap, 1 << 6))
        launch(v)
        hv.l2.script = [FakeRun(exit: .irqWindowOpen)]
        XCTAssertNil(try machine.step())
        XCTAssertEqual(l2HardwareBreakpoints?.first, L.handler, "L1 intercepts #UD")
        XCTAssertEqual(hv.l2VM.read(L.handler, count: 1), [0x90])

        machine.vmx.current = vmcs()
        hv.l2.script = [FakeRun(exit: .irqWindowOpen)]
        XCTAssertNil(try machine.step())
        XCTAssertNil(l2HardwareBreakpoints, "the trap again")
        XCTAssertEqual(hv.l2VM.read(L.handler, count: 1), [0xcc])

        hv.l2.script = [FakeRun(exit: .mmio(MMIOExit(address: L.handler + 0x100, length: 1, isWrite: true, data: 0x5a)))]
        try step()
        XCTAssertEqual(machine.ram.read(L.l2Base + L.handler + 0x100, count: 1), [0x5a])
        hv.l2.script = [FakeRun(exit: .irqWindowOpen)]
        XCTAssertNil(try machine.step())
        XCTAssertEqual(l2HardwareBreakpoints?.first, L.handler, "L2 wrote to the page")
        XCTAssertEqual(hv.l2VM.read(L.handler, count: 1), [0x90])
    }

    func testEntryInjectsTheEventL1Asked() {
        var v = vmcs()
        XCTAssertTrue(v.write(.entryInterruptionInfo, 1 << 31 | 3 << 8 | 1 << 11 | 13))    // #GP(error code)
        XCTAssertTrue(v.write(.entryExceptionErrorCode, 0x18))
        launch(v)
        XCTAssertEqual(hv.l2.events.exception, VCPUEvents.Exception(injected: true, vector: 13, errorCode: 0x18))
        XCTAssertEqual(field(.entryInterruptionInfo).map { $0 >> 31 }, 0, "27.6: the valid bit is cleared at entry")
    }

    // MARK: Reflection and resumption

    func testAnOUTL1InterceptsIsReflectedAndL2Resumes() throws {
        storeBytes([0xe6, 0x80], l2: L.code)                            // out 0x80, al
        launch(vmcs())
        // KVM retires an OUT before it exits: RIP is past it.
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 2) },
                                exit: .io(IOExit(port: 0x80, size: 1, direction: .output, value: 0x42)))]
        try step()
        assertReflected(.ioInstruction)
        XCTAssertEqual(field(.exitQualification), 0x80 << 16 | 1 << 6, "port 0x80, immediate, 1 byte, OUT (Table 28-5)")
        XCTAssertEqual(field(.exitInstructionLength), 2)
        XCTAssertEqual(field(.guestRIP), L.code, "the saved RIP is the OUT's")
        // L1 moves RIP past the OUT and resumes: L2 continues there.
        XCTAssertTrue(machine.vmx.current?.write(.guestRIP, L.code + 2) ?? false)
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        XCTAssertEqual(hv.l2.registers.rip, L.code + 2)
        XCTAssertEqual(machine.activeLevel, 2)
    }

    /// With an enlightened VMCS current (docs/EVMCS.md), a reflected exit
    /// also lands in its page at the TLFS offsets, where L1 reads it as
    /// memory; fields the exit does not change stay as the page had them.
    func testAReflectedExitIsWrittenIntoTheEnlightenedVMCSPage() throws {
        storeBytes([0xe6, 0x80], l2: L.code)                            // out 0x80, al
        let page: UInt64 = 0x2_1000
        let plain = vmcs()
        var v = VMCS12(enlightenedAt: page)
        for f in VMCSField.allFields { v.write(f, plain.read(f) ?? 0) }
        launch(v)
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 2) },
                                exit: .io(IOExit(port: 0x80, size: 1, direction: .output, value: 0x42)))]
        try step()
        assertReflected(.ioInstruction)
        let ram = machine.ram
        XCTAssertEqual(ram.load(UInt32.self, at: page + 692), UInt32(VMXExitReason.ioInstruction.rawValue), "VM_EXIT_REASON")
        XCTAssertEqual(ram.load(UInt64.self, at: page + 720), 0x80 << 16 | 1 << 6, "EXIT_QUALIFICATION")
        XCTAssertEqual(ram.load(UInt32.self, at: page + 712), 2, "VM_EXIT_INSTRUCTION_LEN")
        XCTAssertEqual(ram.load(UInt64.self, at: page + 816), L.code, "GUEST_RIP")
        XCTAssertEqual(ram.load(UInt64.self, at: page + 768), L.stack, "GUEST_RSP")
        XCTAssertEqual(ram.load(UInt16.self, at: page + 130), 0x08, "GUEST_CS_SELECTOR")
        XCTAssertEqual(ram.load(UInt64.self, at: page + 80), 0, "HOST_RIP: not exit state, not written")
        XCTAssertEqual(machine.vmx.current?.isEnlightened, true)
    }

    /// `--hyperv-evmcs` replaces KVM's hypervisor leaves with Hyper-V's and
    /// sets CPUID.1:ECX.31; without it L1's CPUID keeps KVM's leaves.
    func testHyperVLeavesOnlyWhenOffered() throws {
        let host = [CPUIDEntry(function: 1, eax: 0, ebx: 0, ecx: 0, edx: 0),
                    CPUIDEntry(function: 0x4000_0000, eax: 0x4000_0001, ebx: 0x4b4d_564b, ecx: 0x564b_4d56, edx: 0x4d),
                    CPUIDEntry(function: 0x4000_0001, eax: 0x0100_7afb, ebx: 0, ecx: 0, edx: 0)]
        let plain = Machine.guestCPUID(host, vmx: true)
        XCTAssertEqual(plain.filter { $0.function >= 0x4000_0000 }, Array(host.dropFirst()))
        XCTAssertEqual(plain.first?.ecx, 1 << 5, "VMX, and no hypervisor bit added")
        let hv = Machine.guestCPUID(host, vmx: true, hyperV: true)
        XCTAssertEqual(hv.first?.ecx, 1 << 5 | 1 << 31)
        XCTAssertEqual(hv.filter { $0.function >= 0x4000_0000 }.map(\.function), Array(0x4000_0000...0x4000_000a))
        XCTAssertEqual(hv.first { $0.function == 0x4000_0001 }?.eax, 0x3123_7648, "Hv#1, not KVM's features")
        XCTAssertEqual((hv.first { $0.function == 0x4000_0004 }?.eax ?? 0) & 1 << 14, 1 << 14)
        // The VP assist page MSR reaches L0 through the filter either way;
        // without Hyper-V it is #GP.
        XCTAssertTrue(Machine.emulatedMSRs.contains { $0.contains(HyperV.vpAssistPageMSR) })
        XCTAssertNil(machine.readMSR(HyperV.vpAssistPageMSR))
        XCTAssertFalse(machine.writeMSR(HyperV.vpAssistPageMSR, 0x2001))
    }

    /// An IN at EIP 0xffffffff: KVM retires it to EIP 0 when it completes.
    /// The length comes from the instruction, never from the two RIPs.
    func testAnINThatWrapsEIPIsReflectedWithoutATrap() throws {
        launch(vmcs())
        hv.l2.script = [FakeRun(effect: { cpu in
            cpu.set(rip: 0xffff_ffff)
            cpu.onFinishPending = { $0.set(rip: 0) }
        }, exit: .io(IOExit(port: 0x60, size: 1, direction: .input)))]
        try step()
        assertReflected(.ioInstruction)
        XCTAssertEqual(field(.guestRIP), 0xffff_ffff)
        XCTAssertEqual(field(.exitInstructionLength), 1, "no bytes to fetch there: the one-byte form")
        XCTAssertEqual(field(.exitQualification), 0x60 << 16 | 1 << 3, "port 0x60, IN, 1 byte")
    }

    func testAnINIsReportedAtItsOwnAddressWithItsLength() throws {
        storeBytes([0x66, 0xe5, 0x60], l2: L.code)                    // in ax, 0x60
        launch(vmcs())
        hv.l2.script = [FakeRun(effect: { cpu in
            cpu.onFinishPending = { $0.set(rip: L.code + 3) }
        }, exit: .io(IOExit(port: 0x60, size: 2, direction: .input)))]
        try step()
        assertReflected(.ioInstruction)
        XCTAssertEqual(field(.guestRIP), L.code)
        XCTAssertEqual(field(.exitInstructionLength), 3)
        XCTAssertEqual(field(.exitQualification), 0x60 << 16 | 1 << 6 | 1 << 3 | 1, "immediate port, IN, 2 bytes")
    }

    func testAnOUTL1DoesNotInterceptGoesToL1sDevice() throws {
        launch(vmcs(proc: [.hltExiting]))
        hv.l2.script = [FakeRun(exit: .io(IOExit(port: 0x80, size: 1, direction: .input)))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "L0 answered it as L1's platform")
        XCTAssertEqual(hv.l2.ioInputs.count, 1)
    }

    func testAnRDMSRIsReflectedBeforeItRetires() throws {
        storeBytes([0x0f, 0x32], l2: L.code)
        launch(vmcs())
        hv.l2.script = [FakeRun(exit: .rdmsr(MSRExit(index: 0x10)))]
        try step()
        assertReflected(.rdmsr)
        XCTAssertEqual(field(.exitInstructionLength), 2)
        XCTAssertEqual(field(.guestRIP), L.code)
        XCTAssertEqual(hv.l2.finishedPending, 1, "KVM's completion was flushed before L2's state was saved")
    }

    /// A VM exit loads L1's host MSRs (SDM 28.5.1), but L0 writes only those
    /// L1's vCPU may not hold: the first exit writes them all, the next
    /// none, and after L1's own WRMSR of one (which its MSR filter sends to
    /// L0, which makes it) that one again.
    func testAnExitWritesOnlyTheHostMSRsL1DoesNotHold() throws {
        var v = vmcs(exit: [.acknowledgeInterruptOnExit, .loadPAT])
        XCTAssertTrue(v.write(.hostIA32PAT, 0x0007_0406_0007_0406))
        XCTAssertTrue(v.write(.hostIA32SysenterEIP, 0xffff_8000_0000_1000))
        func exit() throws {
            var note = ExitNote()
            XCTAssertNil(machine.enterL2(launch: false, note: &note))
            XCTAssertEqual(machine.activeLevel, 2)
            hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 1) }, exit: .hlt)]
            try step()
            assertReflected(.hlt)
        }
        launch(v)
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 1) }, exit: .hlt)]
        try step()
        let hostMSRs: Set<UInt32> = [0x174, 0x175, 0x176, 0x1d9, 0x277]
        XCTAssertEqual(Set(hv.l1.msrWrites), hostMSRs, "the first exit writes every host MSR")
        XCTAssertEqual(hv.l1.msrs[0x176], 0xffff_8000_0000_1000)
        let written = hv.l1.msrWrites.count
        try exit()
        XCTAssertEqual(hv.l1.msrWrites.count, written, "L1 holds them all already")

        hv.l1.script = [FakeRun(exit: .wrmsr(MSRExit(index: 0x176, data: 0x1234_5000)))]
        try step()
        XCTAssertEqual(hv.l1.msrs[0x176], 0x1234_5000, "L0 made L1's write")
        XCTAssertEqual(hv.l1.msrReplies.last?.fault, false)
        let afterWRMSR = hv.l1.msrWrites.count
        try exit()
        XCTAssertEqual(Array(hv.l1.msrWrites[afterWRMSR...]), [0x176], "only the MSR L1 changed")
        XCTAssertEqual(hv.l1.msrs[0x176], 0xffff_8000_0000_1000)
    }

    func testHLTIsReflectedWithItsLength() throws {
        launch(vmcs())
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 1) }, exit: .hlt)]     // KVM reports HLT retired
        try step()
        assertReflected(.hlt)
        XCTAssertEqual(field(.guestRIP), L.code)
        XCTAssertEqual(field(.exitInstructionLength), 1)
    }

    func testAnAccessOutsideEPT12IsAnEPTViolation() throws {
        storeBytes([0x89, 0x08], l2: L.code)                            // mov [eax], ecx
        launch(vmcs())
        // KVM retires a store before it reports it: RIP is past the MOV.
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 2); $0.registers.rax = 0x30_0000 },
                                exit: .mmio(MMIOExit(address: 0x30_0000, length: 4, isWrite: true, data: 1)))]
        try step()
        assertReflected(.eptViolation)
        XCTAssertEqual(field(.guestPhysicalAddress), 0x30_0000)
        XCTAssertEqual(field(.exitQualification).map { $0 & 7 }, 2, "a data write (SDM Table 28-7)")
        XCTAssertEqual(field(.guestRIP), L.code, "reported at the store, found again by decoding")
    }

    func testALoadOutsideEPT12IsAnEPTViolationAtTheLoad() throws {
        launch(vmcs())
        hv.l2.script = [FakeRun(exit: .mmio(MMIOExit(address: 0x30_0000, length: 4, isWrite: false)))]
        try step()
        assertReflected(.eptViolation)
        XCTAssertEqual(field(.exitQualification).map { $0 & 7 }, 1, "a data read")
        XCTAssertEqual(field(.guestRIP), L.code)
    }

    /// L2's memory read through EPT02's slots, as the reflected I/O exit
    /// reads the instruction L2 ran, holds what a walk of EPT12 gives where
    /// a slot maps it, and falls back to that walk where none does.
    func testL2MemoryThroughTheSlotsIsL2MemoryThroughEPT12() throws {
        storeBytes([0x66, 0xe7, 0x80, 0xee, 0xec], l2: L.code)
        launch(vmcs())
        let l2 = try XCTUnwrap(machine.l2Machine)
        XCTAssertNotNil(l2.slot(containing: L.code), "the first fetch's run is mapped")
        let slots = L2SlotMemory(machine: machine, l2: l2), walk = L2PhysicalMemory(machine: machine)
        for address in [L.code, L.code + 3, L.code + 0xffc, L.stack - 8, L.idt] {
            XCTAssertEqual(slots.read(address, count: 8), walk.read(address, count: 8), "0x\(String(address, radix: 16))")
            XCTAssertEqual(slots.load(UInt64.self, at: address), walk.load(UInt64.self, at: address))
        }
        XCTAssertEqual(slots.read(L.code, count: 5), [0x66, 0xe7, 0x80, 0xee, 0xec])
        XCTAssertNil(l2.slot(containing: 0x90_0000))
        XCTAssertEqual(slots.read(0x90_0000, count: 4), walk.read(0x90_0000, count: 4), "no slot: through EPT12")
        XCTAssertFalse(slots.write(L.code, bytes: [0x90]), "read-only")
    }

    /// A 1 GiB EPT12 leaf at frame 0 over 8 MiB of L1 RAM: the slot covers
    /// the RAM, and the rest of the leaf is L1's unbacked space (all ones).
    func testALargeLeafPastTheEndOfRAMMapsOnlyRAM() throws {
        XCTAssertTrue(machine.ram.store(UInt64(0) | 7 | 6 << 3 | 1 << 7, at: L.pdpt))      // PDPT[0]: 1 GiB at 0
        launch(vmcs())
        XCTAssertTrue(hv.l2VM.slots.contains { $0.at == 0 && $0.offset == 0 && $0.size == 8 << 20 }, "\(hv.l2VM.slots)")
        hv.l2.script = [FakeRun(exit: .mmio(MMIOExit(address: 0x90_0000, length: 4, isWrite: false)))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "not an exit: L1's physical space answers")
        XCTAssertEqual(hv.l2.mmioReads.last, .max, "unbacked L1-physical space reads all ones")
    }

    /// The eager EPT02 policy maps every run of EPT12 at the entry. The
    /// lazy one maps the run of L2's first fetch; where EPT12 is fragmented
    /// (single-page runs) also the rest of that 2 MiB region, and nothing
    /// beyond it. Neither maps a page EPT12 does not, and with A/D flags in
    /// the EPTP both map only what L2 touched.
    func testTheEagerPolicyBuildsAllOfEPT12AtEntry() throws {
        func mapped(_ l2: UInt64) -> Bool { hv.l2VM.slots.contains { $0.at <= l2 && l2 < $0.at + UInt64($0.size) } }
        func build(_ policy: EPT02Policy, eptp: UInt64 = L.eptp) throws {
            var config = MachineConfig(imagePath: imagePath)
            config.memorySize = 8 << 20
            config.ept02Policy = policy
            hv = FakeHypervisor()
            machine = try Machine(config: config, clock: hv.clock, hypervisor: hv)
            buildL2Memory()
            let pt: UInt64 = 0x1_3000, pt2: UInt64 = 0x1_4000
            XCTAssertTrue(machine.ram.store(pt | 7, at: L.pd))                               // PD[0] -> PT
            XCTAssertTrue(machine.ram.store(pt2 | 7, at: L.pd + 8))                          // PD[1] -> PT2
            for page: UInt64 in [1, 0xa, 0xc, 0xf] {                                        // four pages, not contiguous in L1
                XCTAssertTrue(machine.ram.store((L.l2Base + 0x10_0000 - page * 0x1000) | 7 | 6 << 3, at: pt + page * 8))
            }
            XCTAssertTrue(machine.ram.store((L.l2Base + 0x18_0000) | 7 | 6 << 3, at: pt2 + 3 * 8))   // 2 MiB + 0x3000
            var v = vmcs()
            XCTAssertTrue(v.write(.eptPointer, eptp))
            launch(v)
        }
        let other: UInt64 = 0x20_3000
        try build(.lazy)
        XCTAssertTrue([0x1000, 0xa000, 0xc000, 0xf000].allSatisfy(mapped), "the fetch's page and its fragmented region")
        XCTAssertFalse(mapped(other), "not another 2 MiB region")
        try build(.eager)
        XCTAssertTrue([0x1000, 0xa000, 0xc000, 0xf000, other].allSatisfy(mapped), "\(hv.l2VM.slots)")
        XCTAssertFalse(mapped(0xb000) || mapped(0xe000) || mapped(0x10000), "holes in EPT12 stay holes")
        XCTAssertTrue(hv.l2VM.slots.contains { $0.at == 0xc000 && $0.offset == Int(L.l2Base + 0x10_0000 - 0xc000) })
        try build(.eager, eptp: L.eptp | 1 << 6)
        XCTAssertTrue(mapped(0x1000))
        XCTAssertFalse(mapped(0xa000) || mapped(0xc000) || mapped(0xf000) || mapped(other), "A/D flags: only what L2 touched")
    }

    /// A 4 KiB mapping that L1 turns into part of a 2 MiB leaf without
    /// INVEPT: the stale slot may stay (SDM 29.4.3.1); the new slot fits
    /// around it instead of overlapping it (KVM refuses that, EEXIST).
    func testARemappedLeafWithoutINVEPTNeverOverlapsAStaleSlot() throws {
        let pt: UInt64 = 0x1_3000
        XCTAssertTrue(machine.ram.store(pt | 7, at: L.pd))                                   // PD[0] -> PT
        XCTAssertTrue(machine.ram.store((L.l2Base + 0x1000) | 7 | 6 << 3, at: pt + 8))      // PT[1]: L2 0x1000 only
        launch(vmcs())
        XCTAssertTrue(hv.l2VM.slots.contains { $0.at == 0x1000 && $0.size == 0x1000 }, "\(hv.l2VM.slots)")
        XCTAssertTrue(machine.ram.store(L.l2Base | 7 | 6 << 3 | 1 << 7, at: L.pd))          // PD[0]: 2 MiB leaf, no INVEPT
        hv.l2.script = [FakeRun(exit: .mmio(MMIOExit(address: 0x5000, length: 4, isWrite: false)))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2)
        XCTAssertTrue(hv.l2VM.slots.contains { $0.at == 0x2000 && $0.offset == Int(L.l2Base) + 0x2000 }, "\(hv.l2VM.slots)")
    }

    /// Pins a documented deviation: memory slots cannot say "no execute", so
    /// once a data access has put a page EPT12 maps RW- into EPT02, L2 can
    /// fetch from it (the SDM has an EPT violation). A fetch before any data
    /// access is still a violation, from the walk.
    func testAnRWPageInEPT02IsExecutableDeviation() throws {
        let pt: UInt64 = 0x1_3000
        XCTAssertTrue(machine.ram.store(pt | 7, at: L.pd))
        XCTAssertTrue(machine.ram.store((L.l2Base + 0x1000) | 7 | 6 << 3, at: pt + 8))      // code page, RWX
        XCTAssertTrue(machine.ram.store((L.l2Base + 0x6000) | 3 | 6 << 3, at: pt + 0x30))   // 0x6000: RW-
        launch(vmcs())
        XCTAssertNil(hv.l2VM.slots.first { $0.at <= 0x6000 && 0x6000 < $0.at + UInt64($0.size) })
        // An instruction fetch from it, before any slot: EPT violation, fetch, R and W allowed.
        hv.l2.script = [FakeRun(effect: { $0.set(rip: 0x6000) }, exit: .internalError(InternalErrorExit(suberror: 1)))]
        try step()
        assertReflected(.eptViolation)
        XCTAssertEqual(field(.exitQualification).map { $0 & 0x3f }, 0x4 | 0x8 | 0x10, "fetch; readable, writable, not executable")
        // After a data read maps it, the slot has no way to forbid a fetch.
        var note = ExitNote()
        XCTAssertTrue(machine.vmx.current?.write(.guestRIP, L.code) ?? false)
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        hv.l2.script = [FakeRun(exit: .mmio(MMIOExit(address: 0x6000, length: 4, isWrite: false)))]
        try step()
        XCTAssertTrue(hv.l2VM.slots.contains { $0.at <= 0x6000 && 0x6000 < $0.at + UInt64($0.size) })
    }

    func testAnExitDuringDeliveryRecordsTheEvent() throws {
        var v = vmcs()
        XCTAssertTrue(v.write(.entryInterruptionInfo, 1 << 31 | 3 << 8 | 1 << 11 | 13))
        XCTAssertTrue(v.write(.entryExceptionErrorCode, 0))
        launch(v)
        // The delivery meets a page outside EPT12; KVM still holds the #GP
        // as injected.
        hv.l2.script = [FakeRun(exit: .mmio(MMIOExit(address: 0x30_0000, length: 4, isWrite: false)))]
        try step()
        assertReflected(.eptViolation)
        XCTAssertEqual(field(.idtVectoringInfo), 0x8000_0b0d, "SDM 28.2.4: the #GP in delivery, with its error code")
        XCTAssertEqual(field(.idtVectoringErrorCode), 0)
        XCTAssertFalse(hv.l2.events.exception.injected, "L2's vCPU forgets it: L1 re-injects it")
    }

    /// An EPT violation on L2's own access (a fetch, or the MOV behind an
    /// MMIO exit) has the guest-linear address and qualification bits 7 and
    /// 8 (SDM 28.2.1, Table 28-7): 0x181 for a read, not 0x1.
    func testEPTViolationsCarryTheGuestLinearAddress() throws {
        let pt: UInt64 = 0x1_3000
        XCTAssertTrue(machine.ram.store(pt | 7, at: L.pd))
        XCTAssertTrue(machine.ram.store((L.l2Base + 0x1000) | 7 | 6 << 3, at: pt + 8))      // code page only
        storeBytes([0xa1, 0x10, 0x70, 0x00, 0x00], l2: L.code)                              // mov eax, [0x7010]
        launch(vmcs())
        hv.l2.script = [FakeRun(exit: .mmio(MMIOExit(address: 0x7010, length: 4, isWrite: false)))]
        try step()
        assertReflected(.eptViolation)
        XCTAssertEqual(field(.exitQualification), 0x181, "read; linear address valid; the translation of it")
        XCTAssertEqual(field(.guestLinearAddress), 0x7010)
        XCTAssertEqual(field(.guestPhysicalAddress), 0x7010)

        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        hv.l2.script = [FakeRun(effect: { $0.set(rip: 0x6000) }, exit: .internalError(InternalErrorExit(suberror: 1)))]
        try step()
        assertReflected(.eptViolation)
        XCTAssertEqual(field(.exitQualification), 0x184, "fetch; linear address valid; the translation of it")
        XCTAssertEqual(field(.guestLinearAddress), 0x6000)
    }

    /// A VMWRITE across a page boundary reaches L0 as `0f 79` only (KVM
    /// stops at the boundary): L0 fetches the rest and reflects VMWRITE.
    func testAnInstructionAcrossAPageIsFetchedWhole() throws {
        storeBytes([0x0f, 0x79, 0xc3], l2: 0x5ffe)                            // vmwrite eax, ebx
        launch(vmcs())
        let cut = InternalErrorExit(suberror: 1, instruction: InstructionBytes([0x0f, 0x79]))
        hv.l2.script = [FakeRun(effect: { $0.set(rip: 0x5ffe) }, exit: .internalError(cut))]
        try step()
        assertReflected(.vmwrite)
        XCTAssertEqual(field(.exitInstructionLength), 3)
    }

    /// A #UD at L1's handler from a 32-bit code segment of a 64-bit L1
    /// (compatibility mode) is decoded in that segment, where VMX
    /// instructions are #UD (SDM 31.3): the #UD stands. With the handler's
    /// 64-bit CS, L0 used to emulate the instruction.
    func testAVMXInstructionInCompatibilityModeKeepsItsUD() throws {
        let pml4: UInt64 = 0x60_0000, gdt: UInt64 = 0x61_0000, stack: UInt64 = 0x62_0000, code: UInt64 = 0x63_0000
        let ram = machine.ram
        XCTAssertTrue(ram.store(pml4 + 0x1000 | 3, at: pml4))
        XCTAssertTrue(ram.store(pml4 + 0x2000 | 3, at: pml4 + 0x1000))
        for i in 0..<4 { XCTAssertTrue(ram.store(UInt64(i) << 21 | 0x83, at: pml4 + 0x2000 + 8 * UInt64(i))) }
        for (i, d) in [UInt64(0), 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff, 0, 0, 0, 0x00cf_9a00_0000_ffff].enumerated() {
            XCTAssertTrue(ram.store(d, at: gdt + 8 * UInt64(i)))                           // 0x30: 32-bit code
        }
        for (i, v) in [code, 0x30, 0x2, stack + 0x1000, 0x10].enumerated() { XCTAssertTrue(ram.store(v, at: stack + 8 * UInt64(i))) }
        XCTAssertTrue(ram.write(code, bytes: [0x0f, 0xc7, 0x38]))                          // vmptrst [eax]
        var cpu = CPUState()
        cpu.cr0 = 0x8000_0011; cpu.cr4 = 0x20; cpu.efer = 0x500; cpu.cr3 = pml4
        cpu.cs = SegmentState(selector: 0x08, limit: 0xffff_ffff, type: 0xb, l: true, g: true)
        cpu.ss = SegmentState(selector: 0x10, limit: 0xffff_ffff, type: 0x3, db: true, g: true)
        cpu.gdtr = TableRegister(base: gdt, limit: 0x37)
        cpu.gprs[.rsp] = stack
        cpu.gprs[.rax] = 0x64_0000
        machine.vmx.vmxe = true
        machine.vmx.inVMXOperation = true
        var note = ExitNote()
        guard case .notOurs = machine.handleInvalidOpcode(cpu: cpu, note: &note) else {
            return XCTFail("a VMX instruction in compatibility mode was emulated")
        }
        // The same bytes from the 64-bit segment are emulated.
        XCTAssertTrue(ram.store(UInt64(0x08), at: stack + 8))
        guard case .handled = machine.handleInvalidOpcode(cpu: cpu, note: &note) else { return XCTFail("64-bit VMPTRST") }
    }

    /// VMCALL in an L2 without a usable #UD gate: KVM's #UD for it ends in
    /// a triple fault at the VMCALL. L1 gets the VMCALL exit (18), which the
    /// SDM gives unconditionally, not a triple fault (2).
    func testVMCALLWithoutAUDGateIsStillAVMCALLExit() throws {
        storeBytes([0x0f, 0x01, 0xc1], l2: 0x5000)
        launch(vmcs())
        hv.l2.script = [FakeRun(effect: { $0.set(rip: 0x5000) }, exit: .shutdown)]
        try step()
        assertReflected(.vmcall)
        XCTAssertEqual(field(.exitInstructionLength), 3)
        XCTAssertEqual(field(.guestRIP), 0x5000)

        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        hv.l2.script = [FakeRun(effect: { $0.set(rip: 0x5003) }, exit: .shutdown)]
        try step()
        assertReflected(.tripleFault)
    }

    /// DR7 under the debug controls (SDM 27.3.2.1, 28.3.1, 28.5.1): loaded
    /// from GUEST_DR7 at entry with "load debug controls", else L1's carries
    /// over; saved at exit with "save debug controls"; L1's is 400H after
    /// every exit.
    func testDR7FollowsTheDebugControls() throws {
        var v = vmcs(exit: [.acknowledgeInterruptOnExit, .saveDebugControls])
        XCTAssertTrue(v.write(.entryControls, UInt64(VMEntryControls.loadDebugControls.rawValue)))
        XCTAssertTrue(v.write(.guestDR7, 0x401))
        hv.l1.dr7 = 0x4ff
        launch(v)
        XCTAssertEqual(hv.l2.dr7, 0x401, "GUEST_DR7 loaded")
        hv.l2.script = [FakeRun(effect: { $0.dr7 = 0x403; $0.set(rip: L.code + 1) }, exit: .hlt)]
        try step()
        assertReflected(.hlt)
        XCTAssertEqual(field(.guestDR7), 0x403, "saved")
        XCTAssertEqual(hv.l1.dr7, 0x400, "L1's DR7 after the exit")

        var w = vmcs()                                               // neither control
        XCTAssertTrue(w.write(.guestDR7, 0x401))
        hv.l1.dr7 = 0x405
        machine.vmx.current = w
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        XCTAssertEqual(hv.l2.dr7, 0x405, "L1's DR7 carries over")
        hv.l2.script = [FakeRun(effect: { $0.dr7 = 0x407; $0.set(rip: L.code + 1) }, exit: .hlt)]
        try step()
        XCTAssertEqual(field(.guestDR7), 0x401, "not saved")
        XCTAssertEqual(hv.l1.dr7, 0x400)
    }

    /// `--nested-debug-registers unshared`, a measured deviation: no
    /// transition reads a vCPU's debug registers (each read is an ioctl of
    /// about 9 µs on kvm_pvm). L2's DR7 is VMCS12's guest DR7, written when
    /// it changes and saved back as it was loaded; DR6 and L1's DR7 stay
    /// each level's own. The shared default is the test above.
    func testUnsharedDebugRegistersAreNeverReadAtTransitions() throws {
        hv = FakeHypervisor()
        var config = MachineConfig(imagePath: imagePath)
        config.memorySize = 8 << 20
        config.nestedDebugRegisters = .unshared
        machine = try Machine(config: config, clock: hv.clock, hypervisor: hv)
        buildL2Memory()
        var v = vmcs(exit: [.acknowledgeInterruptOnExit, .saveDebugControls])
        XCTAssertTrue(v.write(.entryControls, UInt64(VMEntryControls.loadDebugControls.rawValue)))
        XCTAssertTrue(v.write(.guestDR7, 0x401))
        hv.l1.dr7 = 0x4ff
        hv.l1.debug.dr6 = 0xffff_0ff1
        launch(v)
        XCTAssertEqual(hv.l2.dr7, 0x401, "GUEST_DR7 loaded")
        XCTAssertEqual(hv.l2.debug.dr6, DebugRegisters.reset.dr6, "L1's DR6 not carried over")
        let reads = hv.l1.debugRegisterReads + hv.l2.debugRegisterReads
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 1) }, exit: .hlt)]
        try step()
        assertReflected(.hlt)
        XCTAssertEqual(field(.guestDR7), 0x401, "saved as loaded")
        XCTAssertEqual(hv.l1.dr7, 0x4ff, "L1's DR7 left alone")
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        XCTAssertEqual(hv.l1.debugRegisterReads + hv.l2.debugRegisterReads, reads, "no read at the exit or at the next entry")
        XCTAssertTrue(machine.vmx.current?.write(.guestDR7, 0x403) ?? false)
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        XCTAssertEqual(hv.l2.dr7, 0x403, "a new GUEST_DR7 is loaded")
    }

    /// A #DB exit (SDM 28.2.1, Table 28-1): the qualification has the DR6
    /// bits the #DB set (B0-B3, BD, BS), and DR6 is left as it was. DR6 is
    /// not switched by VMX: L2 starts with L1's, and L1 sees what L2 left
    /// after any other exit.
    func testADebugExceptionExitReportsDR6AndLeavesIt() throws {
        let handler = L.handler + 0x40
        store(handler | 0x8 << 16 | 0x8e << 40, l2: L.idt + 1 * 8)                    // #DB gate
        var v = vmcs()
        XCTAssertTrue(v.write(.exceptionBitmap, 1 << 1))
        hv.l1.debug.dr6 = 0xffff_0ff0
        launch(v)
        XCTAssertEqual(hv.l2.debug.dr6, 0xffff_0ff0, "L2 has L1's DR6")
        // L2 single-steps: KVM delivers the #DB through L2's IDT, setting BS.
        let frameAt = L.stack - 12
        store(UInt32(L.code + 1), l2: frameAt)
        store(UInt32(0x08), l2: frameAt + 4)
        store(UInt32(0x102), l2: frameAt + 8)
        hv.l2.script = [FakeRun(effect: { $0.set(rip: handler); $0.registers.rsp = frameAt; $0.debug.dr6 = 0xffff_4ff0 },
                                exit: .debug(DebugExit(exception: 1, pc: handler, dr6: 2, dr7: 0xc)))]
        try step()
        assertReflected(.exceptionOrNMI)
        XCTAssertEqual(field(.exitInterruptionInfo), 0x8000_0301, "#DB, hardware exception, valid")
        XCTAssertEqual(field(.exitQualification), 0x4000, "BS")
        XCTAssertEqual(field(.guestRIP), L.code + 1, "a trap: RIP past the instruction")
        XCTAssertEqual(hv.l1.debug.dr6, 0xffff_0ff0, "the #DB exit left DR6 alone")

        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        hv.l2.script = [FakeRun(effect: { $0.debug.dr6 = 0xffff_0ff2; $0.set(rip: L.code + 1) }, exit: .hlt)]
        try step()
        assertReflected(.hlt)
        XCTAssertEqual(hv.l1.debug.dr6, 0xffff_0ff2, "L1 sees the DR6 L2 left")
    }

    /// The pending-debug-exceptions field at entry (SDM 27.7.3): a #DB is
    /// recognised before L2's first instruction. With #DB in L1's exception
    /// bitmap that is an exit with the pending bits as qualification; else
    /// L2's IDT takes it with DR6 updated. An entry that injects an event
    /// ignores the field.
    func testPendingDebugExceptionsAtEntry() throws {
        var v = vmcs()
        XCTAssertTrue(v.write(.guestPendingDebugExceptions, 1 << 14 | 1 << 1))
        XCTAssertTrue(v.write(.exceptionBitmap, 1 << 1))
        launch(v)
        hv.l2.script = []                                            // L2 must not run
        try step()
        assertReflected(.exceptionOrNMI)
        XCTAssertEqual(field(.exitInterruptionInfo), 0x8000_0301)
        XCTAssertEqual(field(.exitQualification), 0x4002, "BS and B1")
        XCTAssertEqual(field(.guestRIP), L.code, "before L2's first instruction")
        XCTAssertEqual(field(.guestPendingDebugExceptions), 0, "consumed by the exit")

        var w = vmcs()
        XCTAssertTrue(w.write(.guestPendingDebugExceptions, 1 << 14))
        machine.vmx.current = w
        var note = ExitNote()
        hv.l1.debug.dr6 = 0xffff_0ff1                                 // B0 from an older #DB
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        hv.l2.script = [FakeRun(exit: .hlt)]
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "L2's own handler takes it")
        XCTAssertEqual(hv.l2.events.exception, VCPUEvents.Exception(injected: true, vector: 1, errorCode: nil))
        XCTAssertEqual(hv.l2.debug.dr6, 0xffff_4ff0, "B0-B3 replaced, BS set")

        var x = vmcs()
        XCTAssertTrue(x.write(.guestPendingDebugExceptions, 1 << 14))
        XCTAssertTrue(x.write(.exceptionBitmap, 1 << 1))
        XCTAssertTrue(x.write(.entryInterruptionInfo, 1 << 31 | 0x20))           // external interrupt 0x20
        machine.running = .l1
        machine.vmx.current = x
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        XCTAssertEqual(machine.nextL2Step(try XCTUnwrap(machine.l2Machine)), .run, "a vectoring entry ignores the field")
    }

    /// INT n in L2, which KVM's emulator cannot carry out here: L0 delivers
    /// it through L2's IDT (no exit: INT n is not an exception). INT3 goes
    /// to L1 when its exception bitmap asks, as a software exception with
    /// the instruction's length (SDM 26.2, 28.2.1).
    func testL2SoftwareInterruptsAreDeliveredOrReflected() throws {
        store(L.handler | 0x8 << 16 | 0x8f << 40, l2: L.idt + 0x10 * 8)                 // 32-bit trap gate
        launch(vmcs())
        let intN = InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xcd, 0x10]))
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code); $0.registers.rsp = L.stack; $0.registers.rflags = 0x202 },
                                exit: .internalError(intN))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "no exit")
        XCTAssertEqual(hv.l2.registers.rip, L.handler)
        XCTAssertEqual(hv.l2.registers.rsp, L.stack - 12)
        XCTAssertEqual(hv.l2.registers.rflags, 0x202, "a trap gate keeps IF")
        XCTAssertEqual(machine.ram.load(UInt32.self, at: L.l2Base + L.stack - 12), UInt32(L.code + 2), "the return address")

        var v = vmcs()
        XCTAssertTrue(v.write(.exceptionBitmap, 1 << 3))
        machine.running = .l1
        launch(v)
        let int3 = InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xcc]))
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 4) }, exit: .internalError(int3))]
        try step()
        assertReflected(.exceptionOrNMI)
        XCTAssertEqual(field(.exitInterruptionInfo), 0x8000_0603, "#BP, software exception, valid")
        XCTAssertEqual(field(.exitInstructionLength), 1)
        XCTAssertEqual(field(.guestRIP), L.code + 4, "at the INT3")
    }

    /// A software exception L1 injects (an INT3 it intercepted) is delivered
    /// by L0 at the entry, returning past the VM-entry instruction length
    /// (SDM 27.6.1); KVM's injection returned to the INT3 itself.
    func testAnInjectedSoftwareExceptionReturnsPastTheInstruction() throws {
        store(L.handler | 0x8 << 16 | 0x8e << 40, l2: L.idt + 3 * 8)
        var v = vmcs()
        XCTAssertTrue(v.write(.entryInterruptionInfo, 1 << 31 | 6 << 8 | 3))           // #BP, software exception
        XCTAssertTrue(v.write(.entryInstructionLength, 1))
        launch(v)
        XCTAssertEqual(hv.l2.registers.rip, L.handler, "delivered at the entry")
        XCTAssertNil(DeliveredEvent(hv.l2.events), "nothing left for KVM to inject")
        XCTAssertEqual(machine.ram.load(UInt32.self, at: L.l2Base + L.stack - 12), UInt32(L.code + 1), "returns past the INT3")
    }

    /// A software interrupt whose gate EPT12 does not map: an EPT violation
    /// during its delivery, with the event as IDT-vectoring information and
    /// the INT's length (SDM 28.2.4).
    func testAnL2SoftwareInterruptMeetingAnEPTViolationIsVectoring() throws {
        let pt: UInt64 = 0x1_3000
        XCTAssertTrue(machine.ram.store(pt | 7, at: L.pd))
        for page in [UInt64(1), 3, 4, 7] {                                                  // code, GDT, TSS, stack: not the IDT
            XCTAssertTrue(machine.ram.store((L.l2Base + page << 12) | 7 | 6 << 3, at: pt + 8 * page))
        }
        launch(vmcs())
        let intN = InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xcd, 0x1e]))
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code) }, exit: .internalError(intN))]
        try step()
        assertReflected(.eptViolation)
        XCTAssertEqual(field(.guestPhysicalAddress), L.idt + 0x1e * 8)
        XCTAssertEqual(field(.idtVectoringInfo), 0x8000_041e, "INT 0x1e, software interrupt, valid")
        XCTAssertEqual(field(.exitInstructionLength), 2)
    }

    /// L2's paging structures are in EPT02 before L2 runs, as KVM walks
    /// them itself; one EPT12 does not map is an EPT violation with
    /// qualification bit 8 clear (an access to a paging structure, Table
    /// 28-7) when the entry's event delivery needs it.
    func testL2sPagingStructuresAreMappedOrAViolation() throws {
        let pt: UInt64 = 0x1_3000, pd: UInt64 = 0x9000
        XCTAssertTrue(machine.ram.store(pt | 7, at: L.pd))
        for page in [UInt64(1), 2, 3, 4, 7] {                                               // code, IDT, GDT, TSS, stack
            XCTAssertTrue(machine.ram.store((L.l2Base + page << 12) | 7 | 6 << 3, at: pt + 8 * page))
        }
        store(UInt32(0x83 | 1 << 7), l2: pd)                                                  // 4 MiB page at 0
        var v = vmcs()
        XCTAssertTrue(v.write(.guestCR0, 0x8000_0031)); XCTAssertTrue(v.write(.guestCR4, 0x10)); XCTAssertTrue(v.write(.guestCR3, pd))
        XCTAssertTrue(v.write(.entryInterruptionInfo, 1 << 31 | 3 << 8 | 6))                   // #UD
        launch(v)
        XCTAssertNotNil(machine.l2Machine?.deliveryFault, "the page directory is not in EPT12")
        try step()
        assertReflected(.eptViolation)
        XCTAssertEqual(field(.guestPhysicalAddress), pd + 4 * (L.idt >> 22), "the PDE that maps the IDT")
        XCTAssertEqual(field(.exitQualification).map { $0 & 0x187 }, 0x81, "a read; linear address valid; a paging-structure access")
        XCTAssertEqual(field(.idtVectoringInfo), 0x8000_0306)

        XCTAssertTrue(machine.ram.store((L.l2Base + pd) | 7 | 6 << 3, at: pt + 8 * (pd >> 12)))
        machine.running = .l1
        launch(v)
        XCTAssertNil(machine.l2Machine?.deliveryFault)
        XCTAssertTrue(hv.l2VM.slots.contains { $0.at <= pd && pd < $0.at + UInt64($0.size) }, "the page directory has a slot")
    }

    // MARK: MSR lists at exit (SDM 28.4, 28.6, 28.7)

    func testExitMSRListsRunInOrderAndAbortAtABadEntry() throws {
        let store: UInt64 = 0x3_0000, load: UInt64 = 0x3_4000
        var v = vmcs()
        XCTAssertTrue(v.write(.exitMSRStoreAddress, store))
        XCTAssertTrue(v.write(.exitMSRStoreCount, 2))
        XCTAssertTrue(v.write(.exitMSRLoadAddress, load))
        XCTAssertTrue(v.write(.exitMSRLoadCount, 300))
        XCTAssertTrue(machine.ram.store(UInt64(0x175), at: store))
        XCTAssertTrue(machine.ram.store(UInt64(0x176), at: store + 16))
        for i in 0..<300 { XCTAssertTrue(machine.ram.store(UInt64(0x174), at: load + 16 * UInt64(i))) }
        XCTAssertTrue(machine.ram.store(UInt64(0xcafe), at: load + 16 * 299 + 8))
        launch(v)
        hv.l2.msrs[0x175] = 0x1111
        hv.l2.msrs[0x176] = 0x2222
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 1) }, exit: .hlt)]
        try step()
        assertReflected(.hlt)
        XCTAssertEqual(machine.ram.load(UInt64.self, at: store + 8), 0x1111)
        XCTAssertEqual(machine.ram.load(UInt64.self, at: store + 24), 0x2222)
        XCTAssertEqual(hv.l1.msrs[0x174], 0xcafe, "all 300 loaded, the last one last")

        // The second store entry is an x2APIC MSR: abort 1 after the first.
        XCTAssertTrue(machine.ram.store(UInt64(0x808), at: store + 16))
        XCTAssertTrue(machine.ram.store(UInt64(0), at: store + 8))
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 1) }, exit: .hlt)]
        XCTAssertEqual(try machine.step(), .vmxAbort(indicator: 1))
        XCTAssertEqual(machine.ram.load(UInt64.self, at: store + 8), 0x1111, "the entry before it was stored")
        XCTAssertEqual(machine.ram.load(UInt32.self, at: 0x2_0000 + 4), 1, "the indicator, in L1's VMCS region")
        XCTAssertEqual(RunOutcome.vmxAbort(indicator: 1).exitStatus, 86)
    }

    /// An exit MSR-load list writes only what L1's WRMSR could: IA32_UCODE_REV,
    /// whose guest writes KVM ignores, is skipped; IA32_ARCH_CAPABILITIES,
    /// which L1 cannot write, is a VMX abort (indicator 4).
    func testTheExitMSRLoadListHasL1sPrivilegeOnly() throws {
        let load: UInt64 = 0x3_4000
        var v = vmcs()
        XCTAssertTrue(v.write(.exitMSRLoadAddress, load))
        XCTAssertTrue(v.write(.exitMSRLoadCount, 2))
        XCTAssertTrue(machine.ram.store(UInt64(0x8b), at: load))
        XCTAssertTrue(machine.ram.store(UInt64(0x1234_0000_0000), at: load + 8))
        XCTAssertTrue(machine.ram.store(UInt64(0x174), at: load + 16))
        XCTAssertTrue(machine.ram.store(UInt64(7), at: load + 24))
        launch(v)
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 1) }, exit: .hlt)]
        try step()
        assertReflected(.hlt)
        XCTAssertNil(hv.l1.msrs[0x8b], "IA32_UCODE_REV is not written with host privilege")
        XCTAssertEqual(hv.l1.msrs[0x174], 7)
        XCTAssertTrue(machine.ram.store(UInt64(0x10a), at: load))
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 1) }, exit: .hlt)]
        XCTAssertEqual(try machine.step(), .vmxAbort(indicator: 4))
    }

    /// The VM-entry MSR-load list has L2's privilege only (SDM 27.4):
    /// IA32_UCODE_REV is skipped, and IA32_ARCH_CAPABILITIES, which a
    /// guest's WRMSR cannot write, fails the entry at its index (reason 34).
    func testTheEntryMSRLoadListHasAGuestsPrivilegeOnly() throws {
        let load: UInt64 = 0x3_4000
        var v = vmcs()
        XCTAssertTrue(v.write(.entryMSRLoadAddress, load))
        XCTAssertTrue(v.write(.entryMSRLoadCount, 2))
        for (i, (index, value)) in [(UInt64(0x8b), UInt64(0x1234_0000_0000)), (0x174, 7), (0x10a, 1)].enumerated() {
            XCTAssertTrue(machine.ram.store(index, at: load + 16 * UInt64(i)))
            XCTAssertTrue(machine.ram.store(value, at: load + 16 * UInt64(i) + 8))
        }
        launch(v)
        XCTAssertNil(hv.l2.msrs[0x8b], "IA32_UCODE_REV is not written with host privilege")
        XCTAssertEqual(hv.l2.msrs[0x174], 7)

        XCTAssertTrue(v.write(.entryMSRLoadCount, 3))
        machine.running = .l1
        machine.vmx.current = v
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: true, note: &note))
        XCTAssertEqual(machine.activeLevel, 1, "the entry failed")
        XCTAssertEqual(field(.exitReason), 0x8000_0022, "VM-entry failure: MSR loading (34)")
        XCTAssertEqual(field(.exitQualification), 3, "at the third entry")
        XCTAssertNil(hv.l2.msrs[0x10a])
    }

    /// A VM entry that fails (here on its MSR-load list) loads L1's host
    /// state as a VM exit does, MSRs included (SDM 27.8): SYSENTER, PAT
    /// under "load PAT", DEBUGCTL cleared, then the VM-exit MSR-load list.
    func testAFailedEntryLoadsTheHostMSRsAndTheExitMSRLoadList() throws {
        let load: UInt64 = 0x3_4000
        var v = vmcs(exit: [.acknowledgeInterruptOnExit, .loadPAT])
        XCTAssertTrue(v.write(.hostIA32PAT, 0x0007_0406_0007_0406))
        XCTAssertTrue(v.write(.hostIA32SysenterEIP, 0xffff_8000_0000_1000))
        XCTAssertTrue(v.write(.exitMSRLoadAddress, load))
        XCTAssertTrue(v.write(.exitMSRLoadCount, 1))
        XCTAssertTrue(machine.ram.store(UInt64(0xc000_0102), at: load))               // IA32_KERNEL_GS_BASE
        XCTAssertTrue(machine.ram.store(UInt64(0xffff_8000_dead_0000), at: load + 8))
        XCTAssertTrue(v.write(.entryMSRLoadAddress, load + 0x100))                     // IA32_ARCH_CAPABILITIES: refused
        XCTAssertTrue(v.write(.entryMSRLoadCount, 1))
        XCTAssertTrue(machine.ram.store(UInt64(0x10a), at: load + 0x100))
        hv.l1.msrs[0x1d9] = 1                                                           // DEBUGCTL
        machine.vmx.vmxe = true
        machine.vmx.inVMXOperation = true
        machine.vmx.current = v
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: true, note: &note))
        XCTAssertEqual(machine.activeLevel, 1, "the entry failed")
        XCTAssertEqual(field(.exitReason), 0x8000_0022, "VM-entry failure: MSR loading (34)")
        XCTAssertEqual(hv.l1.msrs[0x277], 0x0007_0406_0007_0406, "host PAT")
        XCTAssertEqual(hv.l1.msrs[0x176], 0xffff_8000_0000_1000, "host SYSENTER_EIP")
        XCTAssertEqual(hv.l1.msrs[0x1d9], 0, "DEBUGCTL cleared")
        XCTAssertEqual(hv.l1.msrs[0xc000_0102], 0xffff_8000_dead_0000, "the VM-exit MSR-load list")
    }

    /// RDTSCP and RDPID with "enable RDTSCP" 0 raise #UD in L2 (SDM 26.3):
    /// through L2's IDT, or as an exception exit when L1's exception bitmap
    /// asks for #UD. KVM's emulator cannot run them, so they reach L0.
    func testRDTSCPAndRDPIDRaiseUDInL2() throws {
        let rdtscp = InternalErrorExit(suberror: 1, instruction: InstructionBytes([0x0f, 0x01, 0xf9]))
        launch(vmcs())
        hv.l2.script = [FakeRun(exit: .internalError(rdtscp))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "L2's own #UD handler runs")
        XCTAssertEqual(hv.l2.events.exception, VCPUEvents.Exception(injected: true, vector: 6, errorCode: nil))

        var v = vmcs()
        XCTAssertTrue(v.write(.exceptionBitmap, 1 << 6))
        machine.running = .l1
        launch(v)
        let rdpid = InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xf3, 0x0f, 0xc7, 0xf8]))
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 0x10) }, exit: .internalError(rdpid))]
        try step()
        assertReflected(.exceptionOrNMI)
        XCTAssertEqual(field(.exitInterruptionInfo), 0x8000_0306, "#UD, hardware exception, valid")
        XCTAssertEqual(field(.guestRIP), L.code + 0x10, "a fault: RIP at the instruction")
    }

    // MARK: Time

    /// One VMX-preemption timer tick is 2^rate TSC cycles, 1 ns each here.
    var tickNanos: UInt64 { 1 << (machine.vmx.capabilities.misc & 0x1f) }

    func timerVMCS(ticks: UInt64, proc: ProcessorBasedControls = [.hltExiting, .unconditionalIOExiting]) -> VMCS12 {
        var v = vmcs(pin: .activatePreemptionTimer, proc: proc, exit: [.acknowledgeInterruptOnExit, .savePreemptionTimer])
        XCTAssertTrue(v.write(.guestVMXPreemptionTimerValue, ticks))
        return v
    }

    func testATimerThatExpiresWhileL2RunsExits() throws {
        launch(timerVMCS(ticks: 100))
        // L2 runs past the deadline; the host timer kicks it out.
        hv.l2.script = [FakeRun(ran: 100 * tickNanos + 1, exit: .interrupted)]
        try step()
        assertReflected(.preemptionTimerExpired)
        XCTAssertEqual(field(.guestVMXPreemptionTimerValue), 0, "28.3.4: saved as expired")
    }

    /// The timer counts down in the HLT activity state (SDM 26.5.1): the
    /// exit of a halted L2 comes when the timer's time has passed, not at
    /// once with the idle time skipped.
    func testATimerInTheHLTStateExpiresOnTime() throws {
        launch(timerVMCS(ticks: 100, proc: []))
        hv.l2.script = [FakeRun(ran: 10 * tickNanos, exit: .hlt)]
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "no HLT exiting: L2 halts")
        let halted = hv.clock.wall
        try step()
        assertReflected(.preemptionTimerExpired)
        XCTAssertEqual(hv.clock.wall - halted, 90 * tickNanos, "the 90 ticks left passed in the HLT state")
        XCTAssertEqual(field(.guestActivityState), 1, "saved as HLT")
        XCTAssertEqual(hv.l2.runs, 1, "L2 did not run again")
    }

    func testL0sOwnTimeIsNotL2s() throws {
        launch(timerVMCS(ticks: 1000, proc: [.hltExiting]))
        // L2 runs 10 ticks; L0 then spends 100 times the whole timer handling
        // the exit for L1's platform (wall time, none of it L2's).
        hv.l2.script = [FakeRun(ran: 10 * tickNanos, effect: { [hv] _ in hv!.clock.wall += 100_000 * 1000 },
                                exit: .io(IOExit(port: 0x80, size: 1, direction: .input)))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "no exit yet: the timer has 990 ticks left")
        XCTAssertEqual(machine.l2Machine?.preemption?.remainingTicks, 990)
        // Then L1's interrupt: reason 1, not 52, and 990 ticks saved.
        machine.apic.raise(0x40)
        _ = machine.apic.write(offset: 0xf0, size: 4, value: 0x1ff)      // APIC software-enabled
        try step()
        assertReflected(.externalInterrupt)
        XCTAssertEqual(field(.exitInterruptionInfo), 0x8000_0040, "acknowledged on exit: vector 0x40")
        XCTAssertEqual(field(.guestVMXPreemptionTimerValue), 990)
        XCTAssertEqual(hv.l2.runs, 1, "the interrupt exit came without running L2 again")
    }

    func testL1sTimerExpiringWhileL0HandlesAnExitEndsL2sRun() throws {
        launch(vmcs(proc: [.hltExiting]))
        // L1's APIC timer: one-shot, vector 0x41, due in 1 ms.
        _ = machine.apic.write(offset: 0xf0, size: 4, value: 0x1ff)
        _ = machine.apic.write(offset: 0x3e0, size: 4, value: 0xb)          // divide by 1
        _ = machine.apic.write(offset: 0x320, size: 4, value: 0x41)
        _ = machine.apic.write(offset: 0x380, size: 4, value: 1)
        let deadline = try XCTUnwrap(machine.apic.timerDeadline)
        // L0 handles an exit for L1's platform and its handling outlasts the timer.
        hv.l2.script = [FakeRun(ran: 10, effect: { [hv] _ in hv!.clock.wall = deadline + 1 },
                                exit: .io(IOExit(port: 0x80, size: 1, direction: .input)))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2)
        try step()                                                           // no run: the exit is due
        assertReflected(.externalInterrupt)
        XCTAssertEqual(field(.exitInterruptionInfo), 0x8000_0041)
        XCTAssertEqual(hv.l2.runs, 1)
    }

    func testAnExitDueAtAnInjectingEntryWaitsForTheHandler() throws {
        var v = vmcs()
        XCTAssertTrue(v.write(.entryInterruptionInfo, 1 << 31 | 3 << 8 | 6))       // #UD, no error code
        launch(v)
        machine.apic.raise(0x40)
        _ = machine.apic.write(offset: 0xf0, size: 4, value: 0x1ff)
        // The entry's #UD is still waiting: L2 runs to its handler first (27.6).
        XCTAssertEqual(machine.nextL2Step(machine.l2Machine!), .runToHandler)
        hv.l2.script = [FakeRun(effect: { cpu in
            cpu.events.forgetInjectedEvent()                                 // delivered
            cpu.set(rip: L.handler)
        }, exit: .debug(DebugExit(exception: 1, pc: L.handler, dr6: 1, dr7: 0x3)))]
        store(UInt32(L.code), l2: L.stack - 12)
        store(UInt32(0x08), l2: L.stack - 8)
        store(UInt32(0x2), l2: L.stack - 4)
        hv.l2.registers.rsp = L.stack - 12
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "the handler's breakpoint is not an exit of its own")
        try step()
        assertReflected(.externalInterrupt)
        XCTAssertEqual(field(.guestRIP), L.handler, "the exit comes at the handler's first instruction")
        XCTAssertEqual(field(.idtVectoringInfo).map { $0 >> 31 }, 0, "nothing was left in delivery")
    }

    /// External-interrupt exiting 0 (SDM 26.2): L1's interrupt goes through
    /// L2's IDT. L0 injects it into L2's vCPU when L2 can take it and marks
    /// it in service in L1's APIC; while L2 blocks interrupts it asks KVM
    /// for the interrupt window, and a halted L2 wakes.
    func testWithoutExternalInterruptExitingL2sIDTTakesL1sInterrupt() throws {
        var v = vmcs(proc: [])                                               // HLT exiting 0 too
        XCTAssertTrue(v.write(.pinBasedControls, 0x16))                      // external-interrupt exiting 0
        launch(v)
        _ = machine.apic.write(offset: 0xf0, size: 4, value: 0x1ff)
        machine.apic.raise(0x40)
        let l2 = try XCTUnwrap(machine.l2Machine)
        // RFLAGS.IF is clear: no exit, no injection, the window is asked for.
        XCTAssertEqual(machine.nextL2Step(l2), .run)
        XCTAssertTrue(hv.l2.requestInterruptWindow)
        hv.l2.script = [FakeRun(effect: { $0.registers.rflags = 0x202; $0.events.shadow = [.sti] }, exit: .irqWindowOpen)]
        try step()
        XCTAssertEqual(machine.nextL2Step(l2), .run, "blocking by STI still holds it back")
        hv.l2.events.shadow = []
        try step()                                                           // injected before L2 runs again
        XCTAssertEqual(machine.activeLevel, 2, "no exit to L1")
        XCTAssertEqual(hv.l2.injectedInterrupts, [0x40])
        XCTAssertFalse(hv.l2.requestInterruptWindow)
        XCTAssertNil(machine.apic.deliverableVector)
        XCTAssertEqual(machine.apic.read(offset: 0x100 + 0x40 / 32 * 16, size: 4), 1 << (0x40 % 32), "in service")
        XCTAssertNil(field(.exitReason).flatMap { $0 == 1 ? $0 : nil }, "never an external-interrupt exit")

        // The HLT activity state: the next interrupt wakes L2.
        hv.l2.script = [FakeRun(exit: .hlt)]
        try step()
        XCTAssertEqual(machine.l2Machine?.halted, true)
        _ = machine.apic.write(offset: 0xb0, size: 4, value: 0)               // EOI
        machine.apic.raise(0x41)
        XCTAssertEqual(machine.nextL2Step(l2), .interruptL2)
        try step()
        XCTAssertEqual(hv.l2.injectedInterrupts, [0x40, 0x41])
        XCTAssertEqual(machine.l2Machine?.halted, false)
    }

    /// L1's one-instruction interrupt window (SDM Vol. 3A 6.8.3): while an
    /// interrupt waits for L1 to open its window, L0 single-steps L1 (KVM
    /// reports the window only at exits of its own). A step is no exit of
    /// L1's; once L1 can take the interrupt it is injected and stepping ends.
    func testL0StepsL1UntilItsInterruptWindowOpens() throws {
        _ = machine.apic.write(offset: 0xf0, size: 4, value: 0x1ff)
        machine.apic.raise(0x50)
        hv.l1.readyForInterruptInjection = false
        hv.l1.script = [FakeRun(effect: { $0.set(rip: 0x10_0010) }, exit: .debug(DebugExit(exception: 1, pc: 0x10_0010, dr6: 0x4000, dr7: 0)))]
        try step()
        XCTAssertTrue(hv.l1.guestDebug.last?.control.contains(.singleStep) ?? false, "stepping while the interrupt waits")
        XCTAssertTrue(hv.l1.requestInterruptWindow)
        XCTAssertEqual(hv.l1.injectedInterrupts, [])
        hv.l1.readyForInterruptInjection = true
        hv.l1.script = [FakeRun(exit: .irqWindowOpen)]
        try step()
        XCTAssertEqual(hv.l1.injectedInterrupts, [0x50])
        XCTAssertFalse(hv.l1.guestDebug.last?.control.contains(.singleStep) ?? true, "no stepping once it is delivered")
    }

    /// A standard KVM host reports a guest's own single-step trap as a
    /// debug exit while L0's breakpoints are armed, at the next instruction
    /// (no handler): L0 raises the #DB the guest would have taken, with
    /// DR6.BS: for L2 an exception exit when L1 intercepts #DB, for L1
    /// through its IDT.
    func testAGuestsOwnSingleStepTrapIsItsDebugException() throws {
        var v = vmcs()
        XCTAssertTrue(v.write(.exceptionBitmap, 1 << 1))
        launch(v)
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 2) },
                                exit: .debug(DebugExit(exception: 1, pc: L.code + 2, dr6: 0xffff_4ff0, dr7: 0x3)))]
        try step()
        assertReflected(.exceptionOrNMI)
        XCTAssertEqual(field(.exitInterruptionInfo), 0x8000_0301)
        XCTAssertEqual(field(.exitQualification), 0x4000)
        XCTAssertEqual(field(.guestRIP), L.code + 2)

        hv.l1.script = [FakeRun(effect: { $0.set(rip: 0x10_0020) },
                                exit: .debug(DebugExit(exception: 1, pc: 0x10_0020, dr6: 0xffff_4ff0, dr7: 0)))]
        hv.l1.debug.dr6 = 0xffff_0ff1
        try step()
        XCTAssertEqual(hv.l1.events.exception, VCPUEvents.Exception(injected: true, vector: 1, errorCode: nil))
        XCTAssertEqual(hv.l1.debug.dr6, 0xffff_4ff0)
    }

    // MARK: Patched code pages (docs/PATCHING.md)

    /// A machine whose module is an image with `code` at L2-physical
    /// L.code, loaded there by L1 (as turtle loads its L2).
    func patchedMachine(code: [UInt8]) throws {
        let modulePath = imagePath + ".l2"
        let module = ELFWriter(is64: true, entry: L.code, segments: [TestSegment(paddr: L.code, data: code)], multiboot: nil)
        XCTAssertTrue(FileManager.default.createFile(atPath: modulePath, contents: Data(module.build())))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: modulePath) }
        hv = FakeHypervisor()
        var config = MachineConfig(imagePath: imagePath)
        config.memorySize = 8 << 20
        config.modules = [modulePath]
        machine = try Machine(config: config, clock: hv.clock, hypervisor: hv)
        buildL2Memory()
        storeBytes(code, l2: L.code)
    }

    /// L2's CPUID reaches L0 through INT3 in L2's private copy of the page
    /// and exits to L1 (SDM 26.1.2), while L1's page stays as it was.
    func testL2sCPUIDExitsThroughItsPatchedCodePage() throws {
        let code: [UInt8] = [0x90, 0x0f, 0xa2, 0xf4]                          // nop; cpuid; hlt
        try patchedMachine(code: code)
        launch(vmcs())
        XCTAssertEqual(hv.l2VM.read(L.code, count: 4), [0x90, 0xcc, 0xa2, 0xf4], "L2 runs the patched copy")
        XCTAssertEqual(machine.ram.read(L.l2Base + L.code, count: 4), code, "L1's page is untouched")
        XCTAssertEqual(hv.l2VM.slots.first { $0.at == L.code }?.size, 4096, "the copy is a page of its own")
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 1) },
                                exit: .internalError(InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xcc, 0xa2, 0xf4]))))]
        try step()
        assertReflected(.cpuid)
        XCTAssertEqual(field(.exitInstructionLength), 2)
        XCTAssertEqual(field(.guestRIP), L.code + 1, "at the CPUID")

        // L1 rewrites the page: the next entry drops the copy, and the
        // page L2 then gets is L1's, unpatched.
        store(UInt8(0x90), l2: L.code + 1)
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        XCTAssertEqual(hv.l2VM.read(L.code, count: 4), [0x90, 0x90, 0xa2, 0xf4])
    }

    /// L2 writes to a patched page: the write goes to L1's page through
    /// EPT12, and L2 runs L1's page from then on.
    func testAnL2WriteToAPatchedPageDropsTheCopy() throws {
        try patchedMachine(code: [0x90, 0x0f, 0xa2, 0xf4])
        launch(vmcs())
        hv.l2.script = [FakeRun(exit: .mmio(MMIOExit(address: L.code + 0x100, length: 1, isWrite: true, data: 0x5a)))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2)
        XCTAssertEqual(machine.ram.read(L.l2Base + L.code + 0x100, count: 1), [0x5a])
        XCTAssertEqual(hv.l2VM.read(L.code, count: 2), [0x90, 0x0f], "L1's page, unpatched")
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        XCTAssertEqual(hv.l2VM.read(L.code, count: 2), [0x90, 0x0f], "and it stays so")
    }

    /// An INT3 of L2's own, on no patched page, is L2's breakpoint.
    func testL2sOwnINT3IsNoPatchedSite() throws {
        try patchedMachine(code: [0x90, 0x0f, 0xa2, 0xf4])
        storeBytes([0xcc], l2: L.code + 0x2000)
        launch(vmcs())
        store(L.handler | 0x8 << 16 | 0x8e << 40, l2: L.idt + 3 * 8)                  // #BP gate
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 0x2000) },
                                exit: .internalError(InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xcc]))))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "no exit: L0 delivers the INT3 through L2's IDT")
        XCTAssertEqual(hv.l2.registers.rip, L.handler)
    }

    /// L2's RDTSC at its patched site (SDM 26.1.3, 26.3): an exit under
    /// RDTSC exiting; else L0 gives L1's TSC plus TSC_OFFSET under "use TSC
    /// offsetting", and L2 goes on past it.
    func testL2sRDTSCExitsOrReadsTheOffsetTSC() throws {
        try patchedMachine(code: [0x0f, 0x31, 0xf4])                         // rdtsc; hlt
        let trap = InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xcc, 0x31, 0xf4]))
        launch(vmcs(proc: [.hltExiting, .rdtscExiting]))
        hv.l2.script = [FakeRun(exit: .internalError(trap))]
        try step()
        assertReflected(.rdtsc)
        XCTAssertEqual(field(.exitInstructionLength), 2)

        var v = vmcs(proc: [.hltExiting, .useTSCOffsetting])
        XCTAssertTrue(v.write(.tscOffset, 0x1_0000_0005))
        machine.vmx.current = v
        var note = ExitNote()
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        hv.l1.msrs[0x10] = 0xffff_fff0                                       // L1's IA32_TSC
        hv.l2.script = [FakeRun(exit: .internalError(trap))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "no exit")
        XCTAssertEqual(hv.l2.registers.rax, 0xffff_fff5, "low half of 0x1_ffff_fff5")
        XCTAssertEqual(hv.l2.registers.rdx, 0x1)
        XCTAssertEqual(hv.l2.registers.rip, L.code + 2)
    }

    /// MOV to CR3 at a patched site (SDM 26.1.3, Table 28-3): an exit under
    /// CR3-load exiting unless the value is one of the CR3-target values;
    /// INVLPG's exit carries the operand's linear address (28.2.1).
    func testL2sCR3LoadAndINVLPGExitWithTheirQualifications() throws {
        // mov cr3, rbx; invlpg [rax + 8]; hlt (64-bit encodings, read by a 32-bit L2 here)
        try patchedMachine(code: [0x0f, 0x22, 0xdb, 0x0f, 0x01, 0x78, 0x08, 0xf4])
        var v = vmcs(proc: [.hltExiting, .cr3LoadExiting, .invlpgExiting])
        XCTAssertTrue(v.write(.cr3TargetCount, 1))
        XCTAssertTrue(v.write(.cr3TargetValue0, 0x5000))
        launch(v)
        XCTAssertEqual(hv.l2VM.read(L.code, count: 4), [0xcc, 0x22, 0xdb, 0xcc])
        hv.l2.registers.rbx = 0x7000
        hv.l2.script = [FakeRun(exit: .internalError(InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xcc, 0x22, 0xdb]))))]
        try step()
        assertReflected(.controlRegisterAccess)
        XCTAssertEqual(field(.exitQualification), 0x303, "CR3, MOV to CR, RBX")
        XCTAssertEqual(field(.exitInstructionLength), 3)

        var note = ExitNote()
        XCTAssertTrue(machine.vmx.current?.write(.guestRIP, L.code + 3) ?? false)
        XCTAssertNil(machine.enterL2(launch: false, note: &note))
        hv.l2.registers.rax = 0x2000
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 3) },
                                exit: .internalError(InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xcc, 0x01, 0x78, 0x08]))))]
        try step()
        assertReflected(.invlpg)
        XCTAssertEqual(field(.exitQualification), 0x2008, "the linear address")
        XCTAssertEqual(field(.exitInstructionLength), 4)
    }

    /// A site L1 does not intercept (a CR3 target value here): KVM runs the
    /// original instruction. L1's page stands in for the copy while L0
    /// single-steps L2, and the copy comes back at the step's debug exit.
    func testAnUninterceptedSiteRunsTheOriginalInstructionOnce() throws {
        try patchedMachine(code: [0x0f, 0x22, 0xdb, 0xf4])                   // mov cr3, rbx; hlt
        var v = vmcs(proc: [.hltExiting, .cr3LoadExiting])
        XCTAssertTrue(v.write(.cr3TargetCount, 1))
        XCTAssertTrue(v.write(.cr3TargetValue0, 0x7000))
        launch(v)
        hv.l2.registers.rbx = 0x7000
        hv.l2.script = [FakeRun(exit: .internalError(InternalErrorExit(suberror: 1, instruction: InstructionBytes([0xcc, 0x22, 0xdb]))))]
        try step()
        XCTAssertEqual(machine.activeLevel, 2, "no exit: the value is a CR3 target")
        XCTAssertEqual(hv.l2VM.read(L.code, count: 2), [0x0f, 0x22], "L1's page for the step")
        XCTAssertTrue(hv.l2.guestDebug.last?.control.contains(.singleStep) ?? false)
        hv.l2.script = [FakeRun(effect: { $0.set(rip: L.code + 3) }, exit: .debug(DebugExit(exception: 1, pc: L.code + 3, dr6: 0x4000, dr7: 0)))]
        try step()
        XCTAssertEqual(hv.l2VM.read(L.code, count: 2), [0xcc, 0x22], "the copy is back")
        XCTAssertFalse(hv.l2.guestDebug.last?.control.contains(.singleStep) ?? true)
    }
}
