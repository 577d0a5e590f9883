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
    var cpuState: CPUState { l1Special.state(of: vcpu) }

    // MARK: Channel (a): emulation failures carrying the instruction bytes

    /// An emulation failure: a VMX instruction is decoded and emulated (or
    /// turned into a #UD for channel (b)); anything else ends the run.
    func handleEmulationFailure(_ reported: InstructionBytes, note: inout ExitNote) -> RunOutcome? {
        let cpu = cpuState
        // KVM reports all 15 bytes an instruction can have, as a rule: they
        // are decoded in place, and an array is made only to complete a
        // shorter report or when decoding fails (two allocations per
        // emulated VMREAD otherwise, docs/PERFORMANCE.md).
        let whole = reported.count >= InstructionFetch.maximumLength
        let completed = whole ? [] : InstructionFetch.completing(reported.array, cpu: cpu, memory: ram)
        let decoded = whole ? reported.withUnsafeBytes { VMXDecoder.decode($0, state: cpu) } : VMXDecoder.decode(completed, state: cpu)
        switch decoded {
        case let .success(insn):
            if vmxTrapChannel == .undefinedOpcode {
                inject(.invalidOpcode)
                note.flags.insert(.faulted)
                return nil
            }
            return emulate(insn, cpu: cpu, note: &note)
        case let .failure(exception):
            let bytes = whole ? reported.array : completed
            // Not an instruction the VMX decoder accepts. KVM could not emulate
            // it either: for the VMX opcodes the decoder rejects (a LOCK prefix,
            // a register operand where memory is required) the SDM says #UD.
            if X86Decoders.isVMXOpcode(bytes) {
                inject(exception)
                note.flags.insert(.faulted)
                return nil
            }
            if let int = SoftwareInterrupt(bytes, cpu: cpu) { return l1SoftwareInterrupt(int, cpu: cpu, note: &note) }
            // An instruction that exists only where CPUID offers it, which
            // KVM here reports as an emulation failure: #UD, as on a
            // processor without it (docs/PATCHING.md, "CPUID-gated").
            if X86Decoders.cpuidGated(bytes, mode64: cpu.mode64) != nil {
                inject(.invalidOpcode)
                note.flags.insert(.faulted)
                return nil
            }
            return .unhandledExit("emulation failure, instruction bytes "
                                  + bytes.map { hex($0, digits: 2) }.joined(separator: " "))
        }
    }

    /// Runs one VMX instruction against the core and applies the outcome.
    func emulate(_ insn: DecodedInstruction, cpu: CPUState, note: inout ExitNote) -> RunOutcome? {
        let (result, retired) = execute(insn, at: cpu, note: &note)
        if case let .fault(exception) = result {
            inject(exception)
            return nil
        }
        return complete(result, retired: retired, at: cpu, note: &note)
    }

    /// Executes a VMX instruction of L1's at `cpu` against the core, records
    /// it in the trace note, and drops what an INVEPT invalidates. Returns
    /// the result and the state the instruction retires with.
    func execute(_ insn: DecodedInstruction, at cpu: CPUState, note: inout ExitNote) -> (VMXResult, CPUState) {
        var state = cpu
        let execution = VMXSemantics.execute(insn, cpu: &state, vmx: &vmx, memory: ram)
        describe(execution, in: &note)
        if let invalidation = execution.invalidation { invalidate(invalidation) }
        return (execution.result, state)
    }

    /// Applies every outcome but a fault, which each trap channel delivers its
    /// own way: the retired registers (VMsucceed and VMfail, SDM 31.2), VM
    /// entry (27), or a VM-entry failure back to L1 at `cpu` (27.8).
    func complete(_ result: VMXResult, retired: CPUState, at cpu: CPUState, note: inout ExitNote) -> RunOutcome? {
        switch result {
        case .succeed, .failInvalid, .failValid:
            retired.storeRegisters(into: vcpu)
            return nil
        case .fault:
            return nil
        case let .vmEntry(launch):
            return enterL2(launch: launch, note: &note)
        case let .entryFailed(failure):
            return failEntry(failure, l1: cpu, note: &note)
        }
    }

    /// The trace record of a VMX instruction: VMX exit reason, field, outcome.
    func describe(_ execution: VMXExecution, in note: inout ExitNote) {
        note.vmxReason = UInt32(execution.instruction.exitReason.rawValue)
        note.address = UInt64(execution.field?.rawValue ?? 0)
        note.value = VMXOutcomeCode.encode(execution.result)
        if case .fault = execution.result { note.flags.insert(.faulted) }
    }

    /// Queues a trap-like #DB with `pending` (B0-B3, BS) for `target`, with
    /// DR6 updated as its delivery would (SDM Vol. 3B 18.2.3).
    func injectDebugTrap(_ pending: UInt64, into target: any VirtualCPU) throws(KVMError) {
        var debug = try target.debugRegisters()
        debug.dr6 = DebugExceptions.dr6(debug.dr6, delivering: pending)
        try target.setDebugRegisters(debug)
        inject(X86Exception(vector: 1), into: target)
    }

    /// Queues `exception` for delivery at the current instruction of
    /// `target` (L1's vCPU unless given), through sync events; a #PF's
    /// address goes to CR2.
    func inject(_ exception: X86Exception, into target: (any VirtualCPU)? = nil) {
        let target = target ?? vcpu
        target.events.exception = VCPUEvents.Exception(injected: true, vector: exception.vector, errorCode: exception.errorCode)
        if let address = exception.faultAddress { target.specialRegisters.cr2 = address }
    }
}
