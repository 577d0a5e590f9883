import KVM
import NestedVMX

/// The second KVM VM that runs L2 (docs/ARCHITECTURE.md, "Two VMs"). Created once and
/// reused for every VMLAUNCH; its memory slots are EPT02: runs of L2-physical
/// addresses mapped onto the host memory that backs L1.
final class L2Machine {
    let vm: any GuestVM
    let vcpu: any VirtualCPU
    /// Installed EPT02 slots: L2-physical base, size, offset into L1 RAM.
    private(set) var slots: SlotMap
    typealias Slot = SlotMap.Slot
    /// The strategy the slots were built for; nil: none yet, or invalidated.
    var builtFor: L2PhysicalMap?
    /// Channel (b) for L2: breakpoints on the handlers of L1's exception
    /// bitmap, and on L2's #UD handler for VMCALL, which KVM turns into #UD
    /// (the hypercall quirk is off) though it exits unconditionally in VMX
    /// non-root operation (SDM 26.1.2), where the handler trap cannot serve.
    let breakpoints: BreakpointChannel
    /// L1's exception bitmap the breakpoints were chosen for.
    var watchedExceptionBitmap: UInt64 = 0
    /// The vectors watched for L1: #UD when watched, then the bitmap's
    /// others, four at most.
    var vectorsForL1: [Int] {
        let intercepted = (0..<32).filter { $0 != IDTBreakpoints.udVector && watchedExceptionBitmap & (1 << UInt64($0)) != 0 }
        let ud = watchedVMCALL || watchedExceptionBitmap & (1 << UInt64(IDTBreakpoints.udVector)) != 0
        return Array(((ud ? [IDTBreakpoints.udVector] : []) + intercepted).prefix(IDTBreakpoints.maximumVectors))
    }
    /// How VMCALL in unswept code is caught (`MachineConfig.l2VMCALLTrap`).
    let vmcallTrap: L2VMCALLTrap
    /// The breakpoint on L2's #UD handler catches VMCALL: in `breakpoint`
    /// mode, and in `handler` mode while no copy carries the INT3.
    var watchesVMCALL: Bool { vmcallTrap == .breakpoint || (vmcallTrap == .handler && handlerTrap == nil) }
    /// `watchesVMCALL` as the breakpoints were last chosen.
    var watchedVMCALL: Bool
    /// The `handler` trap (docs/PATCHING.md, "VMCALL in unswept code"):
    /// L2's #UD gate, read as the breakpoints read theirs; the L2-physical
    /// address of its handler's first byte, where L2's copy of the page has
    /// INT3; and the gate key and handler address that address was found for.
    var udGate = IDTBreakpoints(vectors: [IDTBreakpoints.udVector])
    var handlerTrap: UInt64?
    var handlerTrapFound: (key: IDTBreakpoints.Key, linear: UInt64, physical: UInt64?)?
    /// An exception L1 injected at VM entry: its delivery is not intercepted.
    var injectedVector: Int?
    /// The event the last VM entry injected, with its VM-entry instruction
    /// length and L2's RIP at the entry: an exit during its delivery reports
    /// it as L1 wrote it (SDM 28.2.4).
    var entryEvent: EntryEvent?
    /// The vector of an injected event that L2 takes before an exit already
    /// due: a breakpoint on its handler stops L2 just after the delivery
    /// (`Machine.prepareStopAfterDelivery`), and the vector the breakpoints were
    /// last chosen with.
    var deliveryStop: Int?
    var watchedDeliveryStop: Int?
    /// Whether the watched vectors include #BP for patched pages.
    var watchedPatchTrap = false
    /// L2 is in the HLT activity state (SDM 25.4.2): it executed HLT without
    /// HLT exiting, or L1 entered it with activity state 1. It runs again only
    /// after an event; meanwhile L1's interrupts exit to L1.
    var halted = false
    /// The patched copies of code pages in EPT02, by slot (docs/PATCHING.md).
    private(set) var copies: [UInt32: (slot: Slot, memory: GuestMemory, entry: PatchTable.Page)] = [:]
    /// The copies with an INT3 at a site of `patchedClasses` (the others
    /// carry only the handler trap), by slot: while there are any, a CPL-3
    /// site's #BP is watched at L2's #BP handler.
    private(set) var siteCopies = Set<UInt32>()
    /// An MTF VM exit is pending (SDM 26.5.2): set where an L2 instruction
    /// or event delivery completes under "monitor trap flag", taken by
    /// `L2Schedule` before L2 runs again, cleared by any exit to L1.
    var monitorTrap = false
    /// The classes of sites the copies trap: those L1's controls ask for
    /// (`ExitRouting.trapClasses`), as at the last VM entry.
    var patchedClasses: TrapClasses = []
    /// L2-physical pages L2 wrote to: L0 no longer patches them.
    var unpatched = Set<UInt64>()
    /// L0 single-steps L2 over a patched site's original instruction
    /// (docs/PATCHING.md): the page it is on (L1's meanwhile), the
    /// instruction's RIP, CS and RFLAGS.TF, and a register L0 changed for
    /// the step, with the value it goes back to. `atHandler`: the step is
    /// the first instruction of L2's #UD handler, past the handler trap.
    struct OriginalStep {
        var page: UInt64
        var rip: UInt64, cs: UInt16, trapFlag: Bool
        var restoring: (register: Int, value: UInt64)?
        var atHandler = false
    }
    var originalStep: OriginalStep?
    /// The CPU time the last run of L2 was charged to the preemption timer.
    var lastRunNanos: UInt64 = 0
    /// The #DB the entry left pending (SDM 27.7.3), until L0 raises it.
    var debugExceptions: UInt64 = 0
    /// DR6 as the entry gave it to L2 (L1's: VMX does not switch DR6). A
    /// #DB exit leaves DR6 as it was (28.2.1), so L1 gets this value back.
    var entryDR6: UInt64 = DebugRegisters.reset.dr6
    /// With `--nested-debug-registers unshared`: the DR7 L0 last gave L2,
    /// which the exit saves as L2's (L0 does not read it back).
    var loadedDR7: UInt64?
    /// The EPT violation or misconfiguration that delivering the entry's
    /// injected event meets at its IDT gate; taken as L2's first exit.
    var deliveryFault: NestedExit?
    /// What the last entry's page pre-mapping looked at (`mapEntryPages`):
    /// while it and the slots stay the same, there is nothing to redo.
    var premapped: [UInt64]?
    /// The MSR-held guest state last written to L2's vCPU (SYSENTER, PAT,
    /// DEBUGCTL), so an entry writes it again only when it changed.
    var loadedMSRs = MSRValues()
    /// What the MSR filter was last built from (bitmap use and contents).
    var msrFilterBitmap: (useBitmaps: Bool, bytes: [UInt8])?
    /// The VMX-preemption timer while it counts down (SDM 26.5.1).
    var preemption: PreemptionTimer?
    /// Kicks L2's vCPU at the earlier of L1's APIC-timer deadline and the
    /// preemption timer's: the one host timer of this vCPU.
    var kick: HostTimer?
    /// Nanoseconds per preemption-timer tick: 2^rate TSC cycles.
    var preemptionTickNanos: Double = 0

    /// KVM_CAP_NR_MEMSLOTS is 32764 on our hosts; a margin stays free.
    static let slotCapacity = 32_000

    init(_ parts: (vm: any GuestVM, vcpu: any VirtualCPU), slotCapacity: Int = L2Machine.slotCapacity,
         vmcallTrap: L2VMCALLTrap = .handler) {
        vm = parts.vm
        vcpu = parts.vcpu
        slots = SlotMap(capacity: slotCapacity)
        self.vmcallTrap = vmcallTrap
        watchedVMCALL = vmcallTrap != .patched
        breakpoints = BreakpointChannel(vcpu: parts.vcpu, vectors: watchedVMCALL ? [IDTBreakpoints.udVector] : [])
    }

    /// The timer goes first: its kicker points into the vCPU's `kvm_run`.
    deinit { kick = nil }

    /// Drops every EPT02 slot (INVEPT, or a new EPTP).
    func dropAll() throws(KVMError) {
        for s in slots.slots { try vm.unmap(slot: s.id, at: s.base) }
        slots.removeAll()
        copies.removeAll()
        siteCopies.removeAll()
        premapped = nil
    }

    /// Maps `bytes`, the patched copy of the code page at L1-physical `l1`,
    /// read-only at L2-physical `base` (docs/PATCHING.md).
    func mapCopy(at base: UInt64, l1: UInt64, bytes: [UInt8], entry: PatchTable.Page) throws(KVMError) {
        if slots.isFull {
            for old in slots.oldest() { try unmap(old) }
        }
        let copy = try GuestMemory(size: bytes.count, name: "terrapin-l2-patched")
        _ = copy.write(bytes, at: 0)
        let id = slots.takeID()
        do {
            try vm.map(copy, offset: 0, size: bytes.count, slot: id, at: base, readOnly: true)
        } catch {
            slots.giveBack(id)
            throw error
        }
        let slot = Slot(id: id, base: base, size: UInt64(bytes.count), l1: l1, readOnly: true)
        slots.insert(slot)
        copies[id] = (slot, copy, entry)
        if entry.traps(patchedClasses) { siteCopies.insert(id) }
    }

    /// The patched copy mapped at L2-physical `address`, if any.
    func copy(containing address: UInt64) -> (slot: Slot, memory: GuestMemory, entry: PatchTable.Page)? {
        slot(containing: address).flatMap { copies[$0.id] }
    }

    func copySlot(containing address: UInt64) -> Slot? { copy(containing: address)?.slot }

    /// Maps [base, base+size) of L2-physical space onto L1 RAM at `l1`. When
    /// every slot is in use, the oldest quarter are evicted first (EPT02 is
    /// a cache: L2's next touch rebuilds them).
    func map(base: UInt64, size: UInt64, l1: UInt64, readOnly: Bool, memory: GuestMemory) throws(KVMError) {
        if slots.isFull {
            for old in slots.oldest() { try unmap(old) }
        }
        let id = slots.takeID()
        do {
            try vm.map(memory, offset: Int(l1), size: Int(size), slot: id, at: base, readOnly: readOnly)
        } catch {
            slots.giveBack(id)
            throw error
        }
        slots.insert(Slot(id: id, base: base, size: size, l1: l1, readOnly: readOnly))
    }

    /// Removes one slot.
    func unmap(_ slot: Slot) throws(KVMError) {
        try vm.unmap(slot: slot.id, at: slot.base)
        copies[slot.id] = nil
        siteCopies.remove(slot.id)
        slots.remove(slot)
        premapped = nil
    }

    func slot(containing address: UInt64) -> Slot? { slots.slot(containing: address) }
}
