import VMXArch

/// The guest-state fields a vCPU keeps as MSRs (SDM Vol. 3C 25.4.1), with
/// the entry control that loads each (27.3.2.1) and the exit control that
/// saves it (28.3.3); the SYSENTER MSRs are always loaded and saved.
public enum GuestStateMSRs {
    public struct Field: Sendable {
        public let index: UInt32
        public let field: VMCSField
        public let load: VMEntryControls
        public let save: VMExitControls
    }

    public static let sysenterCS: UInt32 = 0x174, sysenterESP: UInt32 = 0x175, sysenterEIP: UInt32 = 0x176
    public static let debugctl: UInt32 = 0x1d9
    public static let pat: UInt32 = 0x277

    public static let fields: [Field] = [
        Field(index: sysenterCS, field: .guestIA32SysenterCS, load: [], save: []),
        Field(index: sysenterESP, field: .guestIA32SysenterESP, load: [], save: []),
        Field(index: sysenterEIP, field: .guestIA32SysenterEIP, load: [], save: []),
        Field(index: pat, field: .guestIA32PAT, load: .loadPAT, save: .savePAT),
        Field(index: debugctl, field: .guestIA32Debugctl, load: .loadDebugControls, save: .saveDebugControls),
    ]
    public static let indices = Set(fields.map(\.index))
}

/// What a VM entry loads into L2, from VMCS12 and L1's state: the SDM 27
/// steps after the checks, as values the monitor applies to L2's vCPU.
public struct VMEntryPlan: Equatable, Sendable {
    /// 27.3.2: L2's registers; the GPRs other than RSP are L1's.
    public var guest: CPUState
    /// 27.3.2.1: the MSR-held guest fields the entry controls load.
    public var guestMSRs: [MSRValue]
    /// 27.4: the VM-entry MSR-load list, checked already (27.2, MSRLoadCheck).
    public var msrLoadList: [MSRAreaEntry]
    /// 27.6: the event to inject, as L1 wrote it.
    public var event: EntryEvent?
    /// 27.6.2: the entry injects a pending MTF VM exit (type 7, "other
    /// event", vector 0): it comes before L2's first instruction, even
    /// with the "monitor trap flag" control 0.
    public var pendingMonitorTrap = false
    /// 27.7.4: the VMX-preemption timer's start value, when it is activated.
    public var preemptionTimerTicks: UInt32?
    /// 25.4.2, 27.7.2: the HLT activity state, unless the entry injects an event.
    public var halted: Bool
    /// VMCS12 afterwards: launched on VMLAUNCH, the entry's event consumed (27.6).
    public var vmcs: VMCS12
}

public struct MSRValue: Equatable, Sendable {
    public var index: UInt32
    public var value: UInt64
    public init(index: UInt32, value: UInt64) { self.index = index; self.value = value }
}

/// What a VM exit does, from the exit, L2's and L1's states and VMCS12: the
/// SDM 28 steps as values the monitor applies.
public struct VMExitPlan: Equatable, Sendable {
    /// VMCS12 with 28.2 (exit information, IDT-vectoring) and 28.3 (guest
    /// state, activity state, the timer's value, the MSR-held guest fields).
    public var vmcs: VMCS12
    /// The exit as recorded, with IDT-vectoring information (28.2.4).
    public var exit: NestedExit
    /// 28.4: the MSR-store list.
    public var msrStore: MSRLists.Plan
    /// What the exit loads into L1: 28.5 and 28.6 together (kept as one
    /// value, which the monitor takes as it is, rather than put together
    /// again from its parts at every exit).
    public var hostLoad: VMTransitions.HostLoad

    /// 28.5: L1's host state.
    public var host: CPUState {
        get { hostLoad.host }
        set { hostLoad.host = newValue }
    }
    /// 28.5.1: the host MSRs: SYSENTER, PAT when loaded, DEBUGCTL cleared.
    public var hostMSRs: [MSRValue] {
        get { hostLoad.hostMSRs }
        set { hostLoad.hostMSRs = newValue }
    }
    /// 28.6: the MSR-load list.
    public var msrLoad: MSRLists.Plan {
        get { hostLoad.msrLoad }
        set { hostLoad.msrLoad = newValue }
    }
}

public enum VMTransitions {
    /// VM entry, after the checks of 27.2-27.4 passed (27.3.2-27.7).
    public static func entry(vmcs: VMCS12, l1: CPUState, launch: Bool, memory: some GuestMemoryAccess,
                             maxMSRListEntries: Int) -> VMEntryPlan {
        let guest = StateTransfer.guestState(from: vmcs, l1: l1)
        let event = EntryEvent(vmcs: vmcs, rip: guest.rip)
        let entryControls = vmcs.entryControls
        var guestMSRs: [MSRValue] = []
        guestMSRs.reserveCapacity(GuestStateMSRs.fields.count)
        for f in GuestStateMSRs.fields where entryControls.isSuperset(of: f.load) {
            guestMSRs.append(MSRValue(index: f.index, value: vmcs.read(f.field) ?? 0))
        }
        let list = MSRLists.entries(address: vmcs.read(.entryMSRLoadAddress) ?? 0,
                                    count: Int(UInt32(truncatingIfNeeded: vmcs.read(.entryMSRLoadCount) ?? 0)),
                                    maximum: maxMSRListEntries, memory: memory).entries
        let ticks = vmcs.pin.contains(.activatePreemptionTimer)
            ? UInt32(truncatingIfNeeded: vmcs.read(.guestVMXPreemptionTimerValue) ?? 0) : nil
        let fields = StateTransfer.fields
        var after = vmcs
        if launch { after.launched = true }
        after[fields.entryInterruptionInfo] = vmcs[fields.entryInterruptionInfo] & ~(1 << 31)
        let info = UInt32(truncatingIfNeeded: vmcs[fields.entryInterruptionInfo])
        var plan = VMEntryPlan(guest: guest, guestMSRs: guestMSRs, msrLoadList: list, event: event, preemptionTimerTicks: ticks,
                               halted: vmcs[fields.guestActivityState] == 1 && event == nil, vmcs: after)
        plan.pendingMonitorTrap = info & (1 << 31) != 0 && (info >> 8) & 7 == 7 && info & 0xff == 0
        return plan
    }

    /// VM exit (28.1-28.6). `guestMSRs` holds L2's values of the MSR-held
    /// guest fields the exit controls save; `preemptionTimer` is what is left
    /// of the timer, when it is active; `pendingDebugExceptions` the #DB
    /// still pending in L2 at the exit (28.3.4), in the field's format.
    /// `wrmsrFaults` says which MSR writes L1's own WRMSR could not make:
    /// the MSR-load list is held to the same rule (28.6).
    public static func exit(_ exit: NestedExit, l2: CPUState, l1: CPUState, vmcs: VMCS12, entryEvent: EntryEvent?,
                            halted: Bool, preemptionTimer: PreemptionTimer?, guestMSRs: [MSRValue],
                            pendingDebugExceptions: UInt64 = 0, memory: some GuestMemoryAccess, maxMSRListEntries: Int,
                            wrmsrFaults: ((UInt32, UInt64) -> Bool)? = nil) -> VMExitPlan {
        var v = vmcs
        let recorded = StateTransfer.vectoring(exit, inDelivery: l2.eventInDelivery, entry: entryEvent, rip: l2.rip)
        // 28.3: the guest-state area.
        if let timer = preemptionTimer, v.exitControls.contains(.savePreemptionTimer) {
            v.write(.guestVMXPreemptionTimerValue, UInt64(timer.remainingTicks))
        }
        v[StateTransfer.fields.guestActivityState] = halted ? 1 : 0                          // 28.3.4: HLT or active
        v[StateTransfer.fields.guestPendingDebugExceptions] = pendingDebugExceptions        // 28.3.4
        let exitControls = v.exitControls
        for f in GuestStateMSRs.fields where exitControls.isSuperset(of: f.save) {
            if let m = guestMSRs.first(where: { $0.index == f.index }) { v.write(f.field, m.value) }
        }
        StateTransfer.saveGuestState(l2, into: &v)
        // 28.2: the exit information.
        StateTransfer.recordExit(recorded, into: &v)
        let store = MSRLists.store(address: v.read(.exitMSRStoreAddress) ?? 0,
                                   count: UInt32(truncatingIfNeeded: v.read(.exitMSRStoreCount) ?? 0),
                                   maximum: maxMSRListEntries, memory: memory)
        let load = hostLoad(vmcs: v, l2: l2, l1: l1, memory: memory, maxMSRListEntries: maxMSRListEntries, wrmsrFaults: wrmsrFaults)
        return VMExitPlan(vmcs: v, exit: recorded, msrStore: store, hostLoad: load)
    }

    /// A VM entry that fails on guest state or MSR loading (27.8): the exit
    /// reason with bit 31 set and the qualification go into VMCS12, then L1's
    /// host state loads as at a VM exit (28.5), host MSRs and the VM-exit
    /// MSR-load list included (28.6). No guest state is saved and the
    /// MSR-store list is not processed.
    public static func failedEntry(_ failure: VMEntryFailure, l1: CPUState, vmcs: VMCS12, memory: some GuestMemoryAccess,
                                   maxMSRListEntries: Int, wrmsrFaults: ((UInt32, UInt64) -> Bool)? = nil)
        -> (vmcs: VMCS12, load: HostLoad) {
        var v = vmcs
        v.write(.exitReason, UInt64(failure.exitReason ?? 0))
        v.write(.exitQualification, failure.exitQualification ?? 0)
        return (v, hostLoad(vmcs: v, l2: l1, l1: l1, memory: memory, maxMSRListEntries: maxMSRListEntries, wrmsrFaults: wrmsrFaults))
    }

    /// What a VM exit loads into L1 (28.5, 28.6).
    public struct HostLoad: Equatable, Sendable {
        /// 28.5: L1's host state.
        public var host: CPUState
        /// 28.5.1: the host MSRs: SYSENTER, PAT when loaded, DEBUGCTL cleared.
        public var hostMSRs: [MSRValue]
        /// 28.6: the MSR-load list.
        public var msrLoad: MSRLists.Plan
    }

    static func hostLoad(vmcs v: VMCS12, l2: CPUState, l1: CPUState, memory: some GuestMemoryAccess, maxMSRListEntries: Int,
                         wrmsrFaults: ((UInt32, UInt64) -> Bool)?) -> HostLoad {
        var hostMSRs = [
            MSRValue(index: GuestStateMSRs.sysenterCS, value: v.read(.hostIA32SysenterCS) ?? 0),
            MSRValue(index: GuestStateMSRs.sysenterESP, value: v.read(.hostIA32SysenterESP) ?? 0),
            MSRValue(index: GuestStateMSRs.sysenterEIP, value: v.read(.hostIA32SysenterEIP) ?? 0),
            MSRValue(index: GuestStateMSRs.debugctl, value: 0),
        ]
        if v.exitControls.contains(.loadPAT) { hostMSRs.append(MSRValue(index: GuestStateMSRs.pat, value: v.read(.hostIA32PAT) ?? 0)) }
        let load = MSRLists.load(address: v.read(.exitMSRLoadAddress) ?? 0,
                                 count: UInt32(truncatingIfNeeded: v.read(.exitMSRLoadCount) ?? 0),
                                 maximum: maxMSRListEntries, memory: memory, wrmsrFaults: wrmsrFaults)
        return HostLoad(host: StateTransfer.hostState(from: v, l2: l2, l1: l1), hostMSRs: hostMSRs, msrLoad: load)
    }
}
