import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// The exits of the L2 VM: L1 wants them (reflect) or L0 handles them as
/// L1's platform would.
extension Machine {
    var l2State: CPUState {
        guard let l2 = l2Machine else { return CPUState() }
        return l2Special.state(of: l2.vcpu)
    }

    /// One exit of the L2 VM: L1 wants it (reflect), or L0 handles it as
    /// L1's platform would.
    func handleL2(_ exit: VCPUExit, l2: L2Machine, note: inout ExitNote) -> RunOutcome? {
        guard let vmcs = vmx.current else { return .unhandledExit("L2 exit without a current VMCS") }
        switch exit {
        case let .io(io):
            if ExitRouting.wantsIO(port: io.port, size: Int(io.size), vmcs: vmcs, memory: ram) {
                note.kind = io.direction == .input ? .ioIn : .ioOut
                note.address = UInt64(io.port); note.size = io.size; note.value = UInt64(io.value)
                return reflectIO(io, l2: l2, note: &note)
            }
            return handleIO(io, on: l2.vcpu, note: &note)
        case let .mmio(access):
            note.kind = access.isWrite ? .mmioWrite : .mmioRead
            note.address = access.address; note.size = access.length
            return handleL2Memory(at: access.address, access: EPTWalker.Access(read: !access.isWrite, write: access.isWrite),
                                  mmio: access, l2: l2, note: &note)
        case .hlt:
            note.kind = .hlt
            if ExitRouting.wantsHLT(vmcs: vmcs) {
                var state = l2State
                state.rip &-= 1                              // KVM reports HLT retired
                return reflect(NestedExit(reason: .hlt, instructionLength: 1), state: state, note: &note)
            }
            // No HLT exiting: L2 enters the HLT activity state, RIP past the HLT.
            l2.halted = true
            return nil
        case .shutdown:
            note.kind = .shutdown
            // VMCALL exits unconditionally (SDM 26.1.2), but reaches L0 as the
            // #UD KVM raises for it; with no usable #UD gate in L2's IDT that
            // becomes a triple fault, with RIP still at the VMCALL.
            let state = l2State
            if InstructionFetch.bytes(at: state.cs.base &+ state.rip, cpu: state, memory: L2PhysicalMemory(machine: self))
                .starts(with: [0x0f, 0x01, 0xc1]) {
                l2.vcpu.events.forgetInjectedEvent()
                return reflect(NestedExit(reason: .vmcall, instructionLength: 3), state: state, note: &note)
            }
            return reflect(NestedExit(reason: .tripleFault), state: state, note: &note)
        case let .internalError(e):
            note.kind = .internalError
            if e.instruction?[0] == PatchTable.trap, let outcome = handlePatchedSite(l2: l2, state: l2State, note: &note) {
                return outcome
            }
            if let bytes = e.instruction { return reflectInstruction(bytes, note: &note) }
            // A fetch from an address with no slot: RIP is the fetch address.
            let state = l2State
            let linear = state.cs.base &+ state.rip
            guard case let .success(gpa) = PageWalker.translate(linear, access: MemoryAccess(fetch: true), state: state,
                                                                 memory: L2PhysicalMemory(machine: self)) else {
                return .unhandledExit("L2 fetch fault at \(hex(linear)) that its page tables do not map")
            }
            note.address = gpa
            // A fetch from a page that has a slot is not what stopped L2 (an
            // event delivery KVM cannot finish, say): end the run, don't loop.
            if l2.slot(containing: gpa) != nil {
                return .unhandledExit("L2 internal error, suberror \(e.suberror), at RIP \(hex(state.rip)) whose page is mapped")
            }
            return handleL2Memory(at: gpa, access: EPTWalker.Access(fetch: true), mmio: nil, l2: l2, note: &note)
        case let .debug(d):
            note.kind = .debug
            note.address = d.pc
            return handleL2Breakpoint(d, l2: l2, note: &note)
        case let .rdmsr(m), let .wrmsr(m):
            let write: Bool
            if case .wrmsr = exit { write = true } else { write = false }
            note.kind = write ? .wrmsr : .rdmsr
            note.address = UInt64(m.index); note.value = m.data
            if ExitRouting.wantsMSR(m.index, write: write, vmcs: vmcs, memory: ram) {
                // The MSR exit comes before the instruction retires: keep that
                // state, flush KVM's completion, and let L1 supply the result.
                let state = l2State
                l2.vcpu.completeMSR(fault: false)
                completePending(l2)
                return reflect(NestedExit(reason: write ? .wrmsr : .rdmsr, instructionLength: 2), state: state, note: &note)
            }
            // L1's platform answers: IA32_APIC_BASE; anything else raises #GP,
            // as it would for an L1 without the MSR.
            if write, GuestStateMSRs.indices.contains(m.index) {
                // L0 makes the write KVM would have made, and remembers it.
                let done = l2.vcpu.setMSRs([(m.index, m.data)]) == 1
                l2.loadedMSRs[m.index] = done ? m.data : nil
                l2.vcpu.completeMSR(fault: !done)
                if !done { note.flags.insert(.faulted) }
            } else if m.index == MSRIndex.apicBase {
                if write {
                    l2.vcpu.completeMSR(fault: !apic.writeBaseMSR(m.data))
                } else {
                    l2.vcpu.completeMSR(data: apic.baseMSR, fault: false)
                    note.value = apic.baseMSR
                }
            } else {
                l2.vcpu.completeMSR(fault: true)
                note.flags.insert(.faulted)
            }
            return nil
        case .interrupted:
            // A kick (a host timer, or L0's own): what is due now, if anything.
            note.kind = .interrupted
            return takeL2Step(nextL2Step(l2), l2: l2, vmcs: vmcs, note: &note)
        case .irqWindowOpen:
            note.kind = .irqWindow
            return nil
        default:
            note.kind = .unknownExit
            return .unhandledExit("L2 exit \(exit) is not handled yet")
        }
    }
}
