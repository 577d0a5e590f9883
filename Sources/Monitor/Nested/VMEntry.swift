import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// VM entry into L2: VMCS12 loaded into the L2 VM (SDM Vol. 3C chapter 27),
/// or a VM-entry failure back to L1 (27.8).
extension Machine {
    /// VMLAUNCH/VMRESUME passed the launch-state checks: load L2 and run it.
    func enterL2(launch: Bool, note: inout ExitNote) -> RunOutcome? {
        guard var vmcs = vmx.current else { return .unhandledExit("VM entry without a current VMCS") }
        do {
            let l2 = try l2Machine ?? L2Machine(hypervisor.makeL2(cpuid: Self.guestCPUID(hostCPUID, vmx: false)))
            l2Machine = l2
            try prepareMemory(of: l2, for: vmcs)
            try updateMSRFilter(of: l2, for: vmcs)
            let l1 = cpuState
            let state = StateTransfer.guestState(from: vmcs, l1: l1)
            state.storeRegistersAndSegments(into: l2.vcpu)
            var events = l2.vcpu.events
            events.shadow = []
            if state.blockingByMovSS { events.shadow.insert(.movSS) }
            if state.blockingBySTI { events.shadow.insert(.sti) }
            events.forgetInjectedEvent()
            let entryEvent = vmcs.read(.entryInterruptionInfo) ?? 0
            Self.injectEntryEvent(entryEvent, errorCode: vmcs.read(.entryExceptionErrorCode) ?? 0, into: &events)
            l2.injectedVector = entryEvent & (1 << 31) != 0 ? Int(entryEvent & 0xff) : nil
            l2.entryEvent = EntryEvent(vmcs: vmcs, rip: state.rip)
            l2.deliveryStop = nil
            // L1 enters L2 away from the handler L0 was stepping past: the
            // step is moot, and the breakpoints are armed again.
            try l2.breakpoints.cancelStep(unlessAt: state.cs.base &+ state.rip)
            l2.vcpu.events = events
            loadGuestMSRs(l2, vmcs: vmcs)
            l2.deliveryFault = try mapEntryPages(of: state, injecting: entryEvent, l2: l2, vmcs: vmcs)
            try armPreemptionTimer(l2, vmcs: vmcs)
            // Activity state HLT (1) stays halted unless the entry injects an event.
            l2.halted = vmcs.read(.guestActivityState) == 1 && entryEvent & (1 << 31) == 0
        } catch {
            return .unhandledExit("setting up the L2 VM: \(error)")
        }
        // 27.4: the VM-entry MSR-load list, into L2's vCPU; an entry KVM refuses
        // fails the entry with reason 34 and its 1-based index.
        // The entry checks (MSRLoadCheck) have read every entry already.
        let list = MSRLists.entries(address: vmcs.read(.entryMSRLoadAddress) ?? 0,
                                    count: Int(truncatingIfNeeded: vmcs.read(.entryMSRLoadCount) ?? 0) & 0xffff_ffff,
                                    maximum: maxMSRListEntries, memory: ram).entries.map { (index: $0.index, value: $0.value) }
        if let l2 = l2Machine, !list.isEmpty {
            let loaded = l2.vcpu.setMSRs(list)
            for (index, _) in list { l2.loadedMSRs[index] = nil }  // the cache no longer knows them
            if loaded < list.count { return failEntry(.msrLoad(index: loaded + 1), l1: cpuState, note: &note) }
        }
        if launch { vmcs.launched = true }
        vmcs.write(.entryInterruptionInfo, (vmcs.read(.entryInterruptionInfo) ?? 0) & ~(1 << 31))   // 27.6: consumed
        vmx.current = vmcs
        if let l2 = l2Machine { running = .l2(l2) }
        note.episode = currentEpisode          // the entry closes the episode
        currentEpisode = 0
        return nil
    }

    /// A VM entry that failed on guest state or the MSR-load list: L1
    /// continues at its host state with exit reason 33 or 34, bit 31 set,
    /// and the qualification; the guest-state area is not saved (SDM 27.8).
    func failEntry(_ failure: VMEntryFailure, l1: CPUState, note: inout ExitNote) -> RunOutcome? {
        guard var vmcs = vmx.current else { return .unhandledExit("VM-entry failure without a current VMCS") }
        // Like KVM's kvm_nested_vmenter_failed tracepoint: name the check.
        printError("terrapin: L1's VM entry failed: \(failure)")
        vmcs.write(.exitReason, UInt64(failure.exitReason ?? 0))
        vmcs.write(.exitQualification, failure.exitQualification ?? 0)
        let host = StateTransfer.hostState(from: vmcs, l2: l1, l1: l1)
        vmx.current = vmcs
        host.storeRegistersAndSegments(into: vcpu)
        note.value = VMXOutcomeCode.encode(.entryFailed(failure))
        return nil
    }

    /// The event the VM-entry interruption-information field asks for
    /// (SDM 27.6): external interrupts and exceptions through KVM's event
    /// injection. NMIs are not delivered (none are advertised).
    static func injectEntryEvent(_ info: UInt64, errorCode: UInt64, into events: inout VCPUEvents) {
        guard info & (1 << 31) != 0 else { return }
        let vector = UInt8(truncatingIfNeeded: info)
        switch (info >> 8) & 7 {
        case 0:
            events.interrupt = VCPUEvents.Interrupt(injected: true, vector: vector, soft: false)
        case 3, 5, 6:
            events.exception = VCPUEvents.Exception(injected: true, vector: vector,
                                                    errorCode: info & (1 << 11) != 0 ? UInt32(truncatingIfNeeded: errorCode) : nil)
        case 4:
            events.interrupt = VCPUEvents.Interrupt(injected: true, vector: vector, soft: true)
        default:
            break
        }
    }
}
