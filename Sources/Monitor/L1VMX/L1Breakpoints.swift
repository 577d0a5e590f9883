import KVM
import NestedVMX
import VMXArch

/// What L0 made of a breakpoint hit at a guest exception handler.
enum TrapResult {
    /// A genuine exception: the guest's handler runs.
    case notOurs
    /// L0 emulated the instruction and unwound or replaced the delivery.
    case handled
    case stop(RunOutcome)
}

extension Machine {
    // MARK: Channel (b): breakpoints on L1's #GP and #UD handlers

    /// Before each entry: keeps the breakpoints on the current handlers.
    ///
    /// An armed execute breakpoint slows every guest instruction on this
    /// backend (KVM's emulator checks it per instruction: about 12800 TSC
    /// cycles per PIO round trip of pio-storm, measured with
    /// Bench/kvm-pio-loop.c). So L0 arms them only once L1 shows it means to
    /// use VMX: its first access to IA32_FEATURE_CONTROL or a VMX capability
    /// MSR, which any VMX hypervisor reads before it sets CR4.VMXE (it needs
    /// the revision identifier). Until then a VMX instruction can only #UD,
    /// which channel (a) handles, and VMCALL's #UD is genuine.
    func refreshBreakpoints() throws(KVMError) {
        guard vmxBreakpointsWanted else { return }
        // From the (cached) special registers: the whole state only when the gates move.
        l1Special.refresh(vcpu)
        let protected = l1Special.special.protectedMode
        let key = IDTBreakpoints.Key(idtr: l1Special.special.idtr, cr3: l1Special.special.cr3,
                                     protectedMode: protected, virtual8086: protected && vcpu.rflags & 1 << 17 != 0,
                                     longModeActive: l1Special.special.longModeActive)
        try l1Breakpoints.refresh(key: key, cpu: { cpuState }, memory: ram)
    }

    /// A breakpoint hit: at L1's #GP handler (a CR4.VMXE write?) or its #UD
    /// handler (a VMX instruction?). Anything else is not L0's business.
    func handleDebugExit(_ exit: DebugExit, note: inout ExitNote) -> RunOutcome? {
        let cpu = cpuState
        note.kind = .debug
        note.address = exit.pc
        do {
            // The handler's first instruction has run: the breakpoints are back.
            if try l1Breakpoints.finishStep() { return nil }
        } catch { return .unhandledExit("re-arming breakpoints: \(error)") }
        if exit.pc == l1Breakpoints.breakpoints.gpHandler {
            return handleGeneralProtection(cpu: cpu, note: &note) ? nil : resumeHandler()
        }
        if exit.pc == l1Breakpoints.breakpoints.udHandler {
            switch handleInvalidOpcode(cpu: cpu, note: &note) {
            case .notOurs: return resumeHandler()
            case .handled: return nil
            case let .stop(outcome): return outcome
            }
        }
        // One step towards an interrupt window: the next entry looks again.
        if l1Breakpoints.windowStepping { return nil }
        // L1's own single-step trap, which a standard KVM host reports while
        // L0's breakpoints are armed: L1's IDT takes it, DR6.BS set.
        if exit.exception == 1, exit.dr6 & DebugExceptions.singleStep != 0 {
            do { try injectDebugTrap(DebugExceptions.singleStep, into: vcpu) } catch { return .unhandledExit("L1's #DB: \(error)") }
            return nil
        }
        return .unhandledExit("debug exit (vector \(exit.exception)) at \(hex(exit.pc))")
    }

    /// Lets the guest's handler run. RFLAGS.RF does not suppress the
    /// breakpoint on this backend (KVM's emulator re-reports it), so L0 lifts
    /// the breakpoints, single-steps the handler's first instruction and
    /// re-arms them at the resulting debug exit.
    func resumeHandler() -> RunOutcome? {
        do {
            try l1Breakpoints.stepPastHandler()
        } catch {
            return .unhandledExit("single-stepping past a breakpoint: \(error)")
        }
        return nil
    }

    /// #GP at L1's handler: if the fault was `mov cr4, reg` setting VMXE, L0
    /// records the virtual VMXE, loads the rest of the value, skips the
    /// instruction and unwinds the delivery, so L1 sees the write succeed
    /// (docs/ARCHITECTURE.md, "Virtual CR4.VMXE"). Returns false for any other #GP.
    func handleGeneralProtection(cpu: CPUState, note: inout ExitNote) -> Bool {
        guard let frame = ExceptionFrame(cpu: cpu, hasErrorCode: true, memory: ram) else { return false }
        if frame.cs & 3 != 0 { return redirectVMCALLToUD(frame: frame, cpu: cpu, note: &note) }
        let at = frame.unwound(cpu)
        guard let (register, length) = X86Decoders.decodeMovToCR4(InstructionFetch.bytes(at: frame.rip, cpu: at, memory: ram)) else { return false }
        let value = at.gprs[register]
        let vmxe: UInt64 = 1 << 13
        guard value & vmxe != 0, value & ~vmxe & ~cr4Supported == 0 else { return false }
        vmx.vmxe = true
        vcpu.specialRegisters.cr4 = value & ~vmxe
        var regs = vcpu.registers
        regs.rip = frame.rip &+ UInt64(length)
        regs.rflags = frame.rflags
        regs.rsp = frame.rsp
        vcpu.registers = regs
        note.kind = .debug
        note.address = 4          // CR4
        note.value = value
        return true
    }

    /// KVM answers VMCALL at CPL 3 with #GP. Outside VMX operation the SDM
    /// says #UD (31.3 VMCALL: the VMX-operation check comes before the CPL
    /// check), so L0 turns that #GP delivery into a #UD one: drop the error
    /// code and enter L1's #UD handler (same gate type assumed).
    func redirectVMCALLToUD(frame: ExceptionFrame, cpu: CPUState, note: inout ExitNote) -> Bool {
        guard !vmx.inVMXOperation, let handler = l1Breakpoints.breakpoints.udHandler else { return false }
        let bytes = InstructionFetch.bytes(at: frame.rip, cpu: cpu, memory: ram)
        guard bytes.starts(with: [0x0f, 0x01, 0xc1]) else { return false }
        var regs = vcpu.registers
        regs.rsp &+= cpu.longModeActive ? 8 : 4          // the error code, dropped
        regs.rip = handler
        vcpu.registers = regs
        note.vmxReason = UInt32(VMXExitReason.vmcall.rawValue)
        note.value = VMXOutcomeCode.encode(.fault(.invalidOpcode))
        return true
    }


    /// #UD at L1's handler: if the instruction is a VMX instruction (the #UD
    /// of a standard KVM host, VMCALL here, and any VMX instruction at CPL 3,
    /// where KVM injects #UD itself rather than report an emulation failure),
    /// L0 emulates it and unwinds the delivery, or replaces it with the
    /// instruction's own fault. A genuine #UD is `.notOurs`.
    func handleInvalidOpcode(cpu: CPUState, note: inout ExitNote) -> TrapResult {
        guard let frame = ExceptionFrame(cpu: cpu, hasErrorCode: false, memory: ram) else { return .notOurs }
        let crossPrivilege = frame.cs & 3 != cpu.cs.selector & 3
        var at = frame.unwound(cpu)
        if frame.cs != UInt64(cpu.cs.selector) {
            // The instruction ran in the frame's code segment, not the handler's:
            // CPL from CS.RPL, the L/D bits from its GDT descriptor (SDM Vol. 3A
            // 3.4.5). A 32-bit segment of a 64-bit L1 is compatibility mode,
            // where VMX instructions are #UD (SDM 31.3).
            guard let code = GDT.descriptor(frame.cs, cpu: cpu, memory: ram) else { return .notOurs }
            at.cs.selector = UInt16(truncatingIfNeeded: frame.cs)
            at.cs.dpl = UInt8(frame.cs & 3)
            at.cs.l = code & (1 << 53) != 0
            at.cs.db = code & (1 << 54) != 0
        }
        if crossPrivilege {
            at.ss.selector = UInt16(truncatingIfNeeded: frame.ss)
            at.ss.dpl = UInt8(frame.ss & 3)
        }
        guard case let .success(insn) = VMXDecoder.decode(InstructionFetch.bytes(at: frame.rip, cpu: at, memory: ram), state: at) else {
            return .notOurs
        }
        let (result, retired) = execute(insn, at: at, note: &note)
        note.kind = .debug
        switch result {
        case .fault(.invalidOpcode):
            return .notOurs                    // the #UD stands: let the handler run
        case let .fault(exception) where crossPrivilege:
            // The delivery already switched to the handler's stack; a #GP would
            // have built the same frame plus an error code. So push the error
            // code and enter L1's #GP handler instead (same gate type assumed).
            guard exception.vector == 13, let handler = l1Breakpoints.breakpoints.gpHandler else { return .notOurs }
            var regs = vcpu.registers
            regs.rsp &-= 8
            guard case .success = PageWalker.writeLinear(regs.rsp, bytes: Array(repeating: 0, count: 8),
                                                         access: MemoryAccess(write: true), state: cpu, memory: ram) else {
                return .notOurs
            }
            regs.rip = handler
            vcpu.registers = regs
            return .handled
        case let .fault(exception):
            // Deliver `exception` instead of the #UD: unwind, then inject.
            frame.unwound(cpu).storeRegisters(into: vcpu)
            inject(exception)
            return .handled
        default:
            // On a VM entry the #UD frame is dropped: VM exits load RSP from the host state.
            return complete(result, retired: retired, at: at, note: &note).map { .stop($0) } ?? .handled
        }
    }
}
