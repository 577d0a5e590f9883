import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// The breakpoint channel for L2 (docs/ARCHITECTURE.md, "Trap channels", channel b): VMCALL at L2's #UD
/// handler where the handler trap cannot serve (L2HandlerTrap.swift), the
/// exceptions of L1's exception bitmap, and the stop after an injected
/// event's delivery.
extension Machine {
    /// Before each L2 entry: keeps the handler trap or a breakpoint on L2's
    /// #UD handler (VMCALL), and breakpoints on the handlers of the first
    /// other vectors of L1's exception bitmap (four debug registers in all;
    /// further vectors reach L2's IDT).
    func refreshL2Breakpoints(_ l2: L2Machine) throws(KVMError) {
        guard !l2.breakpoints.stepping else { return }
        let bitmap = vmx.current?.read(.exceptionBitmap) ?? 0
        let state = l2State
        try refreshHandlerTrap(l2, state: state, exceptionBitmap: bitmap)
        let patched = !l2.siteCopies.isEmpty
        if bitmap != l2.watchedExceptionBitmap || l2.deliveryStop != l2.watchedDeliveryStop || patched != l2.watchedPatchTrap
            || l2.watchesVMCALL != l2.watchedVMCALL {
            l2.watchedExceptionBitmap = bitmap
            l2.watchedVMCALL = l2.watchesVMCALL
            l2.watchedDeliveryStop = l2.deliveryStop
            l2.watchedPatchTrap = patched
            var vectors = l2.vectorsForL1
            // At CPL 3 a patched INT3 is a #BP through L2's IDT: its handler
            // is watched while L2 has copies with sites (docs/PATCHING.md).
            if patched, !vectors.contains(IDTBreakpoints.bpVector) {
                vectors.insert(IDTBreakpoints.bpVector, at: vectors.first == IDTBreakpoints.udVector ? 1 : 0)
                vectors = Array(vectors.prefix(IDTBreakpoints.maximumVectors))
            }
            if let stop = l2.deliveryStop, !vectors.contains(stop), vectors.count < IDTBreakpoints.maximumVectors {
                vectors.append(stop)
            }
            l2.breakpoints.watch(vectors)
        }
        try l2.breakpoints.refresh(cpu: state, memory: L2SlotMemory(machine: self, l2: l2))
    }

    /// A debug exit of L2: the end of a step past a handler or an original
    /// instruction, the stop after an injected event's delivery, a single
    /// step, or a breakpoint on a watched handler (`l2ReachedHandler`). For
    /// #PF, L2's CR2 has already been written by the delivery (documented).
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
            guard let vector = l2.breakpoints.breakpoints.vector(atHandler: d.pc) else {
                return .unhandledExit("L2 debug exit at \(hex(d.pc))")
            }
            return try l2ReachedHandler(vector, state: l2State, l2: l2, note: &note) { () throws(KVMError) in
                // L2's own exception, delivered: under "monitor trap flag" the
                // MTF VM exit comes now, on the boundary after the delivery
                // (26.5.2); the step past the handler's breakpoint waits for
                // the entry.
                try l2.breakpoints.stepPastHandler()
                if l2.breakpoints.monitorTrapping { l2.monitorTrap = true }
                return nil
            }
        } catch {
            return .unhandledExit("L2 breakpoints: \(error)")
        }
    }
}
