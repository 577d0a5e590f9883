import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// The handler trap for VMCALL in L2's unswept code (docs/PATCHING.md,
/// "VMCALL in unswept code"). VMCALL exits unconditionally in VMX non-root
/// operation (SDM Vol. 3C 26.1.2), but KVM turns it into a #UD in L2. In
/// `handler` mode L2's copy of the page of its #UD handler has INT3 on the
/// handler's first byte: at CPL 0 that is an emulation failure that reaches
/// L0 with the #UD's frame on L2's stack, and nothing is armed while L2
/// raises no #UD. Where no copy can carry it, the breakpoint on the handler
/// (`L2Machine.watchesVMCALL`) stands in.
extension Machine {
    /// Before each L2 run: the trap follows L2's #UD gate and paging as they
    /// are now. None where L1 intercepts #UD (its breakpoint must meet the
    /// handler's own first instruction when L2's handler runs), under the
    /// monitor trap flag (each step would stop at the handler before its
    /// INT3), for a handler that may run above CPL 0, or once L2 has written
    /// to the handler's page.
    func refreshHandlerTrap(_ l2: L2Machine, state: CPUState, exceptionBitmap: UInt64) throws(KVMError) {
        guard l2.vmcallTrap == .handler else { return }
        var wanted: UInt64?
        if exceptionBitmap & 1 << UInt64(IDTBreakpoints.udVector) == 0, !l2.breakpoints.monitorTrapping {
            let key = IDTBreakpoints.Key(state), slots = L2SlotMemory(machine: self, l2: l2)
            _ = l2.udGate.refresh(key: key, cpu: { state }, memory: slots)
            if let linear = l2.udGate.udHandler {
                if let found = l2.handlerTrapFound, found.key == key, found.linear == linear {
                    wanted = found.physical
                } else {
                    let memory = L2PhysicalMemory(machine: self)
                    if runsAtCPL0(l2.udGate.gate(of: IDTBreakpoints.udVector, longMode: key.longModeActive, memory: slots),
                                  state: state, memory: memory),
                       case let .success(gpa) = PageWalker.translate(linear, access: MemoryAccess(fetch: true), state: state,
                                                                     memory: memory, setAccessedDirty: false) {
                        wanted = gpa
                    }
                    l2.handlerTrapFound = (key, linear, wanted)
                }
            }
        }
        let pageMask = ~UInt64(PatchTable.pageSize - 1)
        if let w = wanted, l2.unpatched.contains(w & pageMask) { wanted = nil }
        guard wanted != l2.handlerTrap else { return }
        let old = l2.handlerTrap
        l2.handlerTrap = wanted
        // The old page loses its INT3, the new one gets it.
        for page in Set([old, wanted].compactMap { $0.map { $0 & pageMask } }) { try remapPage(page, l2: l2) }
    }

    /// Whether `gate`'s handler runs at CPL 0: its code segment is a
    /// non-conforming one with DPL 0 (SDM Vol. 3A 6.12.1.1). Elsewhere the
    /// INT3 could run at CPL 3, where it is a #BP through L2's IDT.
    func runsAtCPL0(_ gate: IDTGate?, state: CPUState, memory: some GuestMemoryAccess) -> Bool {
        guard let gate, let descriptor = GDT.descriptor(UInt64(gate.selector), cpu: state, memory: memory) else { return false }
        let conforming = descriptor & 1 << 42 != 0, dpl = (descriptor >> 45) & 3
        return !conforming && dpl == 0
    }

    /// L2 at the INT3 of the handler trap, `state` at its #UD handler's first
    /// byte: a VMCALL is reflected, and L2's own #UD runs its handler, whose
    /// first instruction KVM runs from L1's page (`executeOriginal`).
    func handlerTrapHit(l2: L2Machine, state: CPUState, gpa: UInt64, note: inout ExitNote) -> RunOutcome? {
        note.address = gpa
        do {
            return try l2ReachedHandler(IDTBreakpoints.udVector, state: state, l2: l2, note: &note) {
                executeOriginal(at: gpa, state: state, l2: l2, atHandler: true)
            }
        } catch {
            return .unhandledExit("L2's #UD handler trap at \(hex(gpa)): \(error)")
        }
    }

    /// L2 at the first instruction of its handler for `vector`, with the
    /// delivery's frame on its stack, stopped there by a breakpoint or the
    /// handler trap. A CPL-3 patched site's #BP goes to the site; a #UD
    /// raised by VMCALL is its VM exit (reason 18, length 3); an exception
    /// L1 intercepts is exit 0 (SDM 26.2), each after unwinding the
    /// delivery. The delivery of an event L1 injected is neither. Anything
    /// else is L2's own: `runOwn` lets its handler run.
    func l2ReachedHandler(_ vector: Int, state: CPUState, l2: L2Machine, note: inout ExitNote,
                          runOwn: () throws(KVMError) -> RunOutcome?) throws(KVMError) -> RunOutcome? {
        let memory = L2PhysicalMemory(machine: self)
        guard let frame = ExceptionFrame(cpu: state, hasErrorCode: ExitRouting.hasErrorCode(vector), memory: memory),
              let vmcs = vmx.current else {
            return .unhandledExit("L2 at its handler for vector \(vector) at \(hex(state.cs.base &+ state.rip)) without a frame")
        }
        let acrossPrivilege = frame.unwound(state, memory: memory)
        let at = acrossPrivilege ?? frame.unwound(state)
        if vector == IDTBreakpoints.bpVector, frame.rip > 0, var site = acrossPrivilege {
            site.rip -= 1                                        // INT3 is a trap: back to it
            if let outcome = handlePatchedSite(l2: l2, state: site, note: &note) { return outcome }
        }
        let injected = l2.injectedVector == vector
        l2.injectedVector = nil
        if !injected, vector == IDTBreakpoints.udVector,
           InstructionFetch.bytes(at: frame.rip, cpu: at, memory: memory).starts(with: [0x0f, 0x01, 0xc1]) {
            return reflect(NestedExit(reason: .vmcall, instructionLength: 3), state: at, note: &note)
        }
        if !injected, ExitRouting.wantsException(vector, errorCode: frame.errorCode, vmcs: vmcs) {
            let info = DeliveredEvent(kind: .hardwareException, vector: UInt8(truncatingIfNeeded: vector),
                                      errorCode: frame.errorCode.map { UInt32(truncatingIfNeeded: $0) }).interruptionInformation
            // 28.2.1: #PF gives CR2 (already written by the delivery);
            // #DB the DR6 bits its delivery set.
            let qualification = vector == 14 ? state.cr2
                : vector == 1 ? DebugExceptions.exitQualification(dr6: try l2.vcpu.debugRegisters().dr6) : 0
            let exit = NestedExit(reason: .exceptionOrNMI, qualification: qualification,
                                  interruptionInfo: info, interruptionErrorCode: UInt32(truncatingIfNeeded: frame.errorCode ?? 0))
            note.value = UInt64(vector)
            return reflect(exit, state: at, note: &note)
        }
        return try runOwn()
    }
}
