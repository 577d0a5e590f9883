import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// VM entry into L2: VMCS12 loaded into the L2 VM (SDM Vol. 3C chapter 27),
/// or a VM-entry failure back to L1 (27.8).
extension Machine {
    /// VMLAUNCH/VMRESUME passed the launch-state checks: load L2 and run it.
    func enterL2(launch: Bool, note: inout ExitNote) -> RunOutcome? {
        guard let vmcs = vmx.current else { return .unhandledExit("VM entry without a current VMCS") }
        let plan = VMTransitions.entry(vmcs: vmcs, l1: cpuState, launch: launch, memory: ram,
                                       maxMSRListEntries: maxMSRListEntries)
        let l2: L2Machine
        do {
            l2 = try l2Machine ?? L2Machine(hypervisor.makeL2(cpuid: Self.guestCPUID(hostCPUID, vmx: false)),
                                                    vmcallTrap: l2VMCALLTrap)
            l2Machine = l2
            try refreshPatchedCopies(l2, vmcs: vmcs)
            try prepareMemory(of: l2, for: vmcs)
            try updateMSRFilter(of: l2, for: vmcs)
            let state = plan.guest
            state.storeRegistersAndSegments(into: l2.vcpu)
            var events = l2.vcpu.events
            events.shadow = []
            if state.blockingByMovSS { events.shadow.insert(.movSS) }
            if state.blockingBySTI { events.shadow.insert(.sti) }
            events.forgetInjectedEvent()
            // Software events are delivered by L0 below (27.6).
            if let entry = plan.event, !entry.event.kind.isSoftware { Self.inject(entry.event, into: &events) }
            l2.vcpu.events = events
            l2.injectedVector = plan.event.map { Int($0.event.vector) }
            l2.entryEvent = plan.event
            l2.deliveryStop = nil
            // L1 enters L2 away from the handler L0 was stepping past: the
            // step is moot, and the breakpoints are armed again. At the
            // handler the step stands, past the handler trap too, so that
            // the delivery is not judged again.
            let resumesHandlerStep = l2.originalStep.map { $0.atHandler && $0.rip == state.rip && $0.cs == state.cs.selector } ?? false
            if !resumesHandlerStep { try l2.breakpoints.cancelStep(unlessAt: state.cs.base &+ state.rip) }
            // 26.5.2, 26.7.2: under "monitor trap flag" KVM steps L2; an
            // entry that injects an event has its MTF VM exit pending after
            // the delivery, and one that injects a pending MTF VM exit
            // (27.6.2) has it before L2's first instruction.
            let monitorTrap = vmcs.proc.contains(.monitorTrapFlag)
            try l2.breakpoints.stepForMonitorTrap(monitorTrap)
            l2.monitorTrap = (monitorTrap && plan.event != nil) || plan.pendingMonitorTrap
            if !resumesHandlerStep { try restorePatchedCopy(l2) }
            loadGuestMSRs(l2, plan.guestMSRs)
            // 27.3.2.1: DR7 from the guest-state area under "load debug
            // controls"; without it VMX leaves DR7 alone, so L2 has L1's.
            // DR6 is never switched: L2 has L1's.
            switch nestedDebugRegisters {
            case .shared:
                var debug = try vcpu.debugRegisters()
                if vmcs.entryControls.contains(.loadDebugControls) { debug.dr7 = vmcs.read(.guestDR7) ?? 0x400 }
                if try l2.vcpu.debugRegisters() != debug { try l2.vcpu.setDebugRegisters(debug) }
                l2.entryDR6 = debug.dr6
            case .unshared:
                // The measured deviation: only DR7, and only when it changes.
                if vmcs.entryControls.contains(.loadDebugControls), let dr7 = vmcs.read(.guestDR7), dr7 != l2.loadedDR7 {
                    var debug = try l2.vcpu.debugRegisters()
                    debug.dr7 = dr7
                    try l2.vcpu.setDebugRegisters(debug)
                    l2.loadedDR7 = dr7
                }
            }
            l2.debugExceptions = DebugExceptions.pendingAtEntry(vmcs, injecting: plan.event != nil) ?? 0
            l2.deliveryFault = try mapEntryPages(of: state, injecting: plan.event?.event, l2: l2, vmcs: vmcs)
            if let entry = plan.event, entry.event.kind.isSoftware {       // 28.2.4, as no vCPU event holds it
                l2.deliveryFault = l2.deliveryFault?.duringDelivery(of: entry.event, instructionLength: entry.instructionLength)
            }
            try armPreemptionTimer(l2, ticks: plan.preemptionTimerTicks)
            l2.halted = plan.halted
        } catch {
            return .unhandledExit("setting up the L2 VM: \(error)")
        }
        // 27.4: the VM-entry MSR-load list, into L2's vCPU, in order, with a
        // guest's privilege: an entry whose WRMSR would #GP, or that KVM
        // refuses, fails the entry with reason 34 and its 1-based index; one
        // whose guest writes KVM ignores is not written.
        if let failed = loadL2MSRs(plan.msrLoadList, into: l2) {
            return failEntry(.msrLoad(index: failed + 1), l1: cpuState, note: &note)
        }
        vmx.current = plan.vmcs
        running = .l2(l2)
        if let entry = plan.event, entry.event.kind.isSoftware, l2.deliveryFault == nil { deliverInjected(entry, l2: l2) }
        note.episode = currentEpisode          // the entry closes the episode
        currentEpisode = 0
        return nil
    }

    /// A VM entry that failed on guest state or the MSR-load list: L1
    /// continues at its host state with exit reason 33 or 34, bit 31 set,
    /// and the qualification; the guest-state area is not saved (SDM 27.8).
    func failEntry(_ failure: VMEntryFailure, l1: CPUState, note: inout ExitNote) -> RunOutcome? {
        guard let vmcs = vmx.current else { return .unhandledExit("VM-entry failure without a current VMCS") }
        // Like KVM's kvm_nested_vmenter_failed tracepoint: name the check.
        printError("terrapin: L1's VM entry failed: \(failure)")
        note.value = VMXOutcomeCode.encode(.entryFailed(failure))
        let failed = VMTransitions.failedEntry(failure, l1: l1, vmcs: vmcs, memory: ram, maxMSRListEntries: maxMSRListEntries,
                                               wrmsrFaults: Self.guestWRMSRFaults)
        return loadHost(failed.load, vmcs: failed.vmcs)
    }

    /// A software interrupt or exception the entry injects (SDM 27.6.1):
    /// delivered as its instruction would be, returning past the VM-entry
    /// instruction length. L0 delivers it itself: KVM's injection of one
    /// returns to the instruction, not past it, on our hosts (measured
    /// 2026-12-06 with turtle re-injecting an L2 INT3: the INT3 ran again
    /// and again).
    func deliverInjected(_ entry: EntryEvent, l2: L2Machine) {
        let state = l2State
        var note = ExitNote()
        let int = SoftwareInterrupt.deliver(vector: entry.event.vector, kind: entry.event.kind, length: entry.instructionLength)
        guard case let .notRAM(physical)? = carryOut(int, at: state, on: l2.vcpu,
                                                     memory: L2PhysicalMemory(machine: self, writable: true), note: &note) else { return }
        l2.deliveryFault = eptExit(at: physical)?.duringDelivery(of: entry.event, instructionLength: entry.instructionLength)
    }

    /// The event VM entry injects (SDM 27.6), as the vCPU's event:
    /// external interrupts, exceptions and software interrupts through KVM's
    /// event injection. NMIs are not delivered (none are advertised).
    static func inject(_ event: DeliveredEvent, into events: inout VCPUEvents) {
        switch event.kind {
        case .externalInterrupt:
            events.interrupt = VCPUEvents.Interrupt(injected: true, vector: event.vector, soft: false)
        case .hardwareException, .privilegedSoftwareException, .softwareException:
            events.exception = VCPUEvents.Exception(injected: true, vector: event.vector, errorCode: event.errorCode)
        case .softwareInterrupt:
            events.interrupt = VCPUEvents.Interrupt(injected: true, vector: event.vector, soft: true)
        case .nmi:
            break
        }
    }
}
