import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// The breakpoint channel for L2 (docs/ARCHITECTURE.md, "Trap channels", channel b): VMCALL at L2's #UD
/// handler, the exceptions of L1's exception bitmap, and the stop after an
/// injected event's delivery.
extension Machine {
    /// Before each L2 entry: keeps breakpoints on L2's #UD handler (VMCALL)
    /// and on the handlers of the first three other vectors of L1's exception
    /// bitmap (four debug registers in all; further vectors reach L2's IDT).
    func refreshL2Breakpoints(_ l2: L2Machine) throws(KVMError) {
        guard !l2.breakpoints.stepping else { return }
        let bitmap = vmx.current?.read(.exceptionBitmap) ?? 0
        let patched = !l2.copies.isEmpty
        if bitmap != l2.watchedExceptionBitmap || l2.deliveryStop != l2.watchedDeliveryStop || patched != l2.watchedPatchTrap {
            l2.watchedExceptionBitmap = bitmap
            l2.watchedDeliveryStop = l2.deliveryStop
            l2.watchedPatchTrap = patched
            var vectors = l2.vectorsForL1
            // At CPL 3 a patched INT3 is a #BP through L2's IDT: its handler
            // is watched while L2 has patched pages (docs/PATCHING.md).
            if patched, !vectors.contains(IDTBreakpoints.bpVector) {
                vectors.insert(IDTBreakpoints.bpVector, at: 1)
                vectors = Array(vectors.prefix(IDTBreakpoints.maximumVectors))
            }
            if let stop = l2.deliveryStop, !vectors.contains(stop), vectors.count < IDTBreakpoints.maximumVectors {
                vectors.append(stop)
            }
            l2.breakpoints.watch(vectors)
        }
        try l2.breakpoints.refresh(cpu: l2State, memory: L2SlotMemory(machine: self, l2: l2))
    }

    /// A breakpoint hit in L2: VMCALL at its #UD handler is reflected (reason
    /// 18, length 3), and an exception L1 intercepts is reflected as exit 0
    /// (SDM 26.2), each after unwinding the delivery. Anything else runs
    /// L2's own handler. For #PF, L2's CR2 has already been written by the
    /// delivery (documented).
    func handleL2Breakpoint(_ d: DebugExit, l2: L2Machine, note: inout ExitNote) -> RunOutcome? {
        do {
            if try l2.breakpoints.finishStep() {
                // The step ran an original instruction or a handler's first
                // one: under "monitor trap flag" its MTF VM exit is due.
                try restorePatchedCopy(l2, stepped: true)
                if l2.breakpoints.monitorTrapping { l2.monitorTrap = true }
                return nil
            }
            if let stop = l2.deliveryStop, l2.breakpoints.breakpoints.handler(of: stop) == d.pc {
                // The injected event is delivered: the exit that waited for it
                // comes now. A vector watched for L1 as well is handled below.
                l2.deliveryStop = nil
                if !l2.vectorsForL1.contains(stop) { return nil }
            }
            // The step after an instruction: under "monitor trap flag" it is
            // the MTF VM exit (26.5.2). Otherwise it is L2's own single-step
            // trap, which a standard KVM host reports while L0's breakpoints
            // are armed, at the next instruction.
            if d.exception == 1, l2.breakpoints.breakpoints.vector(atHandler: d.pc) == nil,
               d.dr6 & DebugExceptions.singleStep != 0, let vmcs = vmx.current {
                if l2.breakpoints.monitorTrapping {
                    l2.monitorTrap = true
                    return nil
                }
                return raiseDebugException(DebugExceptions.singleStep, l2: l2, vmcs: vmcs, note: &note)
            }
            let state = l2State
            let memory = L2PhysicalMemory(machine: self)
            guard let vector = l2.breakpoints.breakpoints.vector(atHandler: d.pc),
                  let frame = ExceptionFrame(cpu: state, hasErrorCode: ExitRouting.hasErrorCode(vector), memory: memory),
                  let vmcs = vmx.current else {
                return .unhandledExit("L2 debug exit at \(hex(d.pc))")
            }
            let acrossPrivilege = frame.unwound(state, memory: memory)
            let at = acrossPrivilege ?? frame.unwound(state)
            if vector == IDTBreakpoints.bpVector, frame.rip > 0, var site = acrossPrivilege {
                site.rip -= 1                                    // INT3 is a trap: back to it
                if let outcome = handlePatchedSite(l2: l2, state: site, note: &note) { return outcome }
            }
            if vector == IDTBreakpoints.udVector,
               InstructionFetch.bytes(at: frame.rip, cpu: at, memory: memory).starts(with: [0x0f, 0x01, 0xc1]) {
                return reflect(NestedExit(reason: .vmcall, instructionLength: 3), state: at, note: &note)
            }
            // The delivery of an exception L1 injected is not intercepted again.
            let injected = l2.injectedVector == vector
            l2.injectedVector = nil
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
            // L2's own exception, delivered: under "monitor trap flag" the MTF
            // VM exit comes now, on the boundary after the delivery (26.5.2);
            // the step past the handler's breakpoint waits for the entry.
            try l2.breakpoints.stepPastHandler()
            if l2.breakpoints.monitorTrapping { l2.monitorTrap = true }
            return nil
        } catch {
            return .unhandledExit("L2 breakpoints: \(error)")
        }
    }
}
