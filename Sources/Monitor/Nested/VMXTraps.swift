import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// How L1's VMX instructions reach L0 (docs/ARCHITECTURE.md, "Trap channels").
public enum VMXTrapChannel: String, Sendable, CaseIterable {
    /// (a) KVM's emulation-failure exit with the instruction bytes, as on our hosts.
    case emulation
    /// (b) #UD caught by a breakpoint on L1's #UD handler, as on a standard
    /// KVM host. Forced here by turning each emulation failure into a #UD.
    case undefinedOpcode = "ud"
}

extension Machine {
    /// The guest state as the core sees it, from sync regs.
    var cpuState: CPUState { CPUState(vcpu) }

    // MARK: Channel (a): emulation failures carrying the instruction bytes

    /// An emulation failure: a VMX instruction is decoded and emulated (or
    /// turned into a #UD for channel (b)); anything else ends the run.
    func handleEmulationFailure(_ bytes: InstructionBytes, note: inout ExitNote) -> RunOutcome? {
        let cpu = cpuState
        switch VMXDecoder.decode(bytes.array, state: cpu) {
        case let .success(insn):
            if vmxTrapChannel == .undefinedOpcode {
                inject(.invalidOpcode)
                note.flags.insert(.faulted)
                return nil
            }
            return emulate(insn, cpu: cpu, note: &note)
        case let .failure(exception):
            // Not an instruction the VMX decoder accepts. KVM could not emulate
            // it either: for the VMX opcodes the decoder rejects (a LOCK prefix,
            // a register operand where memory is required) the SDM says #UD.
            if Self.isVMXOpcode(bytes.array) {
                inject(exception)
                note.flags.insert(.faulted)
                return nil
            }
            return .unhandledExit("emulation failure, instruction bytes "
                                  + bytes.array.map { hex($0, digits: 2) }.joined(separator: " "))
        }
    }

    /// True if the bytes (after prefixes) start with a VMX opcode: 0F 01 C1-C4/D4,
    /// 0F 78, 0F 79, 0F C7 /6-/7, 66 0F 38 80/81.
    static func isVMXOpcode(_ bytes: [UInt8]) -> Bool {
        var i = 0
        while i < bytes.count, [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3].contains(bytes[i])
            || (0x40...0x4f).contains(bytes[i]) { i += 1 }
        guard i + 2 < bytes.count, bytes[i] == 0x0f else { return false }
        switch bytes[i + 1] {
        case 0x01: return [0xc1, 0xc2, 0xc3, 0xc4, 0xd4].contains(bytes[i + 2])
        case 0x78, 0x79: return true
        case 0xc7: return (bytes[i + 2] >> 3) & 7 >= 6
        case 0x38: return i + 3 < bytes.count && (bytes[i + 2] == 0x80 || bytes[i + 2] == 0x81)
        default: return false
        }
    }

    /// Runs one VMX instruction against the core and applies the outcome.
    func emulate(_ insn: DecodedInstruction, cpu: CPUState, note: inout ExitNote) -> RunOutcome? {
        var state = cpu
        let execution = VMXSemantics.execute(insn, cpu: &state, vmx: &vmx, memory: ram)
        describe(execution, in: &note)
        if let invalidation = execution.invalidation { invalidate(invalidation) }
        switch execution.result {
        case .succeed, .failInvalid, .failValid:
            state.storeRegisters(into: vcpu)
        case let .fault(exception):
            inject(exception)
        case let .vmEntry(launch):
            return enterL2(launch: launch, note: &note)
        case let .entryFailed(failure):
            return failEntry(failure, l1: cpu, note: &note)
        }
        return nil
    }

    /// The trace record of a VMX instruction: VMX exit reason, field, outcome.
    func describe(_ execution: VMXExecution, in note: inout ExitNote) {
        note.vmxReason = UInt32(execution.instruction.exitReason.rawValue)
        note.address = UInt64(execution.field?.rawValue ?? 0)
        note.value = VMXOutcomeCode.encode(execution.result)
        if case .fault = execution.result { note.flags.insert(.faulted) }
    }

    /// Queues `exception` for delivery at the current instruction, through sync events.
    func inject(_ exception: X86Exception) {
        vcpu.events.exception = VCPUEvents.Exception(injected: true, vector: exception.vector, errorCode: exception.errorCode)
        if let address = exception.faultAddress { vcpu.specialRegisters.cr2 = address }
    }

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
        guard vmxBreakpointsWanted, breakpoints.refresh(cpu: cpuState, memory: ram), !steppingPastBreakpoint else { return }
        try armBreakpoints()
    }

    func armBreakpoints() throws(KVMError) {
        let regs = breakpoints.debugRegisters
        try vcpu.setGuestDebug(regs[7] == 0 ? [] : [.enable, .useHardwareBreakpoints], debugRegisters: regs)
    }

    /// A breakpoint hit: at L1's #GP handler (a CR4.VMXE write?) or its #UD
    /// handler (a VMX instruction?). Anything else is not L0's business.
    func handleDebugExit(_ exit: DebugExit, note: inout ExitNote) -> RunOutcome? {
        let cpu = cpuState
        note.kind = .debug
        note.address = exit.pc
        if steppingPastBreakpoint {
            // The handler's first instruction has run: put the breakpoints back.
            steppingPastBreakpoint = false
            do { try armBreakpoints() } catch { return .unhandledExit("re-arming breakpoints: \(error)") }
            return nil
        }
        if exit.pc == breakpoints.gpHandler {
            return handleGeneralProtection(cpu: cpu, note: &note) ? nil : resumeHandler()
        }
        if exit.pc == breakpoints.udHandler {
            switch handleInvalidOpcode(cpu: cpu, note: &note) {
            case .notOurs: return resumeHandler()
            case .handled: return nil
            case let .stop(outcome): return outcome
            }
        }
        return .unhandledExit("debug exit (vector \(exit.exception)) at \(hex(exit.pc))")
    }

    /// Lets the guest's handler run. RFLAGS.RF does not suppress the
    /// breakpoint on this backend (KVM's emulator re-reports it), so L0 lifts
    /// the breakpoints, single-steps the handler's first instruction and
    /// re-arms them at the resulting debug exit.
    func resumeHandler() -> RunOutcome? {
        do {
            try vcpu.setGuestDebug([.enable, .singleStep])
        } catch {
            return .unhandledExit("single-stepping past a breakpoint: \(error)")
        }
        steppingPastBreakpoint = true
        return nil
    }
}

extension VMXInstruction {
    /// The basic exit reason this instruction has when it causes a VM exit (SDM Appendix C).
    public var exitReason: VMXExitReason {
        switch self {
        case .vmcall: .vmcall
        case .vmclear: .vmclear
        case .vmlaunch: .vmlaunch
        case .vmptrld: .vmptrld
        case .vmptrst: .vmptrst
        case .vmread: .vmread
        case .vmresume: .vmresume
        case .vmwrite: .vmwrite
        case .vmxoff: .vmxoff
        case .vmxon: .vmxon
        case .invept: .invept
        case .invvpid: .invvpid
        case .vmfunc: .vmfunc
        }
    }
}

/// How a VMX instruction's outcome is packed into a trace record's value:
/// bits 7:0 the kind (0 VMsucceed, 1 VMfailInvalid, 2 VMfailValid, 3 fault,
/// 4 VM entry, 5 VM-entry failure exit), bits 15:8 the VM-instruction error,
/// the exception vector or the basic exit reason (33 or 34).
public enum VMXOutcomeCode {
    public static func encode(_ result: VMXResult) -> UInt64 {
        switch result {
        case .succeed: 0
        case .failInvalid: 1
        case let .failValid(error): 2 | UInt64(error & 0xff) << 8
        case let .fault(e): 3 | UInt64(e.vector) << 8
        case .vmEntry: 4
        case let .entryFailed(f): 5 | UInt64((f.exitReason ?? 0) & 0xff) << 8
        }
    }
}
