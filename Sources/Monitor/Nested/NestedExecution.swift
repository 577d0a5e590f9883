import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// Running L2: VM entry from VMCS12 into the L2 VM, the exits L2 causes,
/// and the VM exits L0 reflects to L1 (SDM Vol. 3C chapters 27 and 28).
extension Machine {
    // MARK: VM entry

    /// VMLAUNCH/VMRESUME passed the launch-state checks: load L2 and run it.
    func enterL2(launch: Bool, note: inout ExitNote) -> RunOutcome? {
        guard var vmcs = vmx.current else { return .unhandledExit("VM entry without a current VMCS") }
        do {
            let l2 = try l2Machine ?? L2Machine(hypervisor.makeL2(cpuid: l2CPUID))
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
            l2.entryEvent = DeliveredEvent(interruptionInformation: UInt32(truncatingIfNeeded: entryEvent),
                                           errorCode: UInt32(truncatingIfNeeded: vmcs.read(.entryExceptionErrorCode) ?? 0))
                .map { ($0, Int(vmcs.read(.entryInstructionLength) ?? 0), state.rip) }
            l2.deliveryStop = nil
            if l2.steppingPastBreakpoint, l2.breakpoints.vector(atHandler: state.cs.base &+ state.rip) == nil {
                // L1 enters L2 away from the handler L0 was stepping past:
                // the step is moot, and the breakpoints are armed again.
                l2.steppingPastBreakpoint = false
                try armL2Breakpoints(l2)
            }
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
        if let l2 = l2Machine, let list = msrList(at: vmcs.read(.entryMSRLoadAddress) ?? 0, count: vmcs.read(.entryMSRLoadCount) ?? 0),
           !list.isEmpty {
            let loaded = l2.vcpu.setMSRs(list)
            for (index, _) in list { l2.loadedMSRs[index] = nil }  // the cache no longer knows them
            if loaded < list.count { return failEntry(.msrLoad(index: loaded + 1), l1: cpuState, note: &note) }
        }
        if launch { vmcs.launched = true }
        vmcs.write(.entryInterruptionInfo, (vmcs.read(.entryInterruptionInfo) ?? 0) & ~(1 << 31))   // 27.6: consumed
        vmx.current = vmcs
        activeLevel = 2
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

    // MARK: Guest state that KVM keeps in MSRs

    /// The guest-state fields KVM holds as MSRs (SDM 25.4.1), with the entry
    /// control that loads each and the exit control that saves it; the
    /// SYSENTER MSRs are always loaded and saved.
    static let guestStateMSRFields: [(index: UInt32, field: VMCSField, load: VMEntryControls, save: VMExitControls)] = [
        (MSRIndex.sysenterCS, .guestIA32SysenterCS, [], []),
        (MSRIndex.sysenterESP, .guestIA32SysenterESP, [], []),
        (MSRIndex.sysenterEIP, .guestIA32SysenterEIP, [], []),
        (MSRIndex.pat, .guestIA32PAT, .loadPAT, .savePAT),
        (MSRIndex.debugctl, .guestIA32Debugctl, .loadDebugControls, .saveDebugControls),
    ]
    static let guestStateMSRs = Set(guestStateMSRFields.map(\.index))

    /// Into L2's vCPU at entry (SDM 27.3.2.1); only values that changed are written.
    func loadGuestMSRs(_ l2: L2Machine, vmcs: VMCS12) {
        let wanted = Self.guestStateMSRFields.filter { vmcs.entryControls.isSuperset(of: $0.load) }
            .map { (index: $0.index, value: vmcs.read($0.field) ?? 0) }
        // KVM stops at an MSR it refuses (DEBUGCTL bits this host lacks), so
        // each is written alone and applied if it can be.
        for pair in wanted where l2.loadedMSRs[pair.index] != pair.value && l2.vcpu.setMSRs([pair]) == 1 {
            l2.loadedMSRs[pair.index] = pair.value
        }
    }

    /// Back into the guest-state area at VM exit (SDM 28.3.3).
    func saveGuestMSRs(_ l2: L2Machine, into vmcs: inout VMCS12) {
        let fields = Self.guestStateMSRFields.filter { vmcs.exitControls.isSuperset(of: $0.save) }
        // L0 knows the values it loaded at entry and those L2 wrote through
        // it (L2's filter sends those writes here); KVM is asked for the rest.
        let missing = fields.map(\.index).filter { l2.loadedMSRs[$0] == nil }
        if !missing.isEmpty {
            for (index, value) in zip(missing, l2.vcpu.getMSRs(missing)) { l2.loadedMSRs[index] = value }
        }
        for f in fields { if let value = l2.loadedMSRs[f.index] { vmcs.write(f.field, value) } }
    }

    /// L1's host SYSENTER MSRs, and PAT when "load IA32_PAT" is set; DEBUGCTL
    /// is cleared (SDM 28.5.1).
    func loadHostMSRs(_ vmcs: VMCS12) {
        var pairs: [(index: UInt32, value: UInt64)] = [
            (MSRIndex.sysenterCS, vmcs.read(.hostIA32SysenterCS) ?? 0),
            (MSRIndex.sysenterESP, vmcs.read(.hostIA32SysenterESP) ?? 0),
            (MSRIndex.sysenterEIP, vmcs.read(.hostIA32SysenterEIP) ?? 0),
            (MSRIndex.debugctl, 0),
        ]
        if vmcs.exitControls.contains(.loadPAT) { pairs.append((MSRIndex.pat, vmcs.read(.hostIA32PAT) ?? 0)) }
        if vcpu.setMSRs(pairs) < pairs.count {
            for pair in pairs { _ = vcpu.setMSRs([pair]) }        // apply what KVM accepts
        }
    }

    /// An MSR list (SDM 25.7.2, 25.8.2): `count` 16-byte entries of index
    /// (bits 31:0) and value (bits 127:64). nil when it is not in RAM or is
    /// longer than the 512 entries IA32_VMX_MISC allows (the entry checks
    /// reject both before this is read).
    func msrList(at address: UInt64, count: UInt64) -> [(index: UInt32, value: UInt64)]? {
        guard count <= 512 else { return nil }
        var list: [(index: UInt32, value: UInt64)] = []
        for i in 0..<count {
            guard let index = ram.load(UInt32.self, at: address + 16 * i),
                  let value = ram.load(UInt64.self, at: address + 16 * i + 8) else { return nil }
            list.append((index, value))
        }
        return list
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

    /// The CPUID L2 sees: L1's, minus VMX (no L3 yet).
    var l2CPUID: [CPUIDEntry] {
        hostCPUID.map { e in
            var e = e
            if e.function == 1 {
                e.ecx &= ~(UInt32(1) << 24 | UInt32(1) << 21 | UInt32(1) << 5)
                e.ebx &= 0x00ff_ffff
            }
            return e
        }
    }

    /// EPT02: rebuilt lazily whenever the strategy (or its EPTP) changes.
    /// Without EPT, L2 sees L1-physical memory directly: one slot covering
    /// L1's RAM. With EPT, slots are built as L2 touches pages.
    func prepareMemory(of l2: L2Machine, for vmcs: VMCS12) throws(KVMError) {
        let map = L2PhysicalMap(vmcs)
        if l2.builtFor == map { return }
        try l2.dropAll()
        l2.builtFor = map
        switch map {
        case .identity: try l2.map(base: 0, size: UInt64(memory.size), l1: 0, readOnly: false, memory: memory)
        case .ept: break
        }
    }

    /// What a delivery that switches stacks reads and writes (SDM Vol. 3A
    /// 6.12.1, 6.14.4-6.14.5, 7.7): the TSS, and the stacks it names below
    /// their tops: RSP0 and IST1-7 of an IA-32e TSS, SS0:ESP0 of a 32-bit one.
    func stackSwitchPages(_ state: CPUState) -> [UInt64] {
        guard state.protectedMode, !state.virtual8086, !state.tr.unusable else { return [] }
        var pages = [state.tr.base, state.tr.base &+ UInt64(state.tr.limit)]
        if state.longModeActive {
            guard let b = l2Bytes(at: state.tr.base &+ 4, count: 88, state: state) else { return pages }
            for offset in [0] + (0..<7).map({ 32 + 8 * $0 }) {
                let top = b.littleEndian(at: offset, count: 8)
                if top != 0 { pages.append(top &- 1) }
            }
        } else {
            guard let b = l2Bytes(at: state.tr.base &+ 4, count: 6, state: state),
                  let ss0 = GDT.descriptor(b.littleEndian(at: 4, count: 2), cpu: state, memory: L2PhysicalMemory(machine: self))
            else { return pages }
            pages.append((GDT.base(of: ss0) &+ b.littleEndian(at: 0, count: 4) &- 1) & 0xffff_ffff)
        }
        return pages
    }

    /// Maps the EPT12 run holding the L2 page of `linear` if it has no slot
    /// yet. Returns the EPT violation or misconfiguration an access to it
    /// would meet; nil when it is mapped now, or when L2's own paging or an
    /// L1 device address stands in the way (then L2's run finds out).
    func mapL2Page(_ linear: UInt64, access: EPTWalker.Access, state: CPUState, l2: L2Machine,
                   eptp: UInt64) throws(KVMError) -> NestedExit? {
        guard case let .success(gpa) = PageWalker.translate(linear, access: MemoryAccess(fetch: access.fetch), state: state,
                                                            memory: L2PhysicalMemory(machine: self)),
              l2.slot(containing: gpa) == nil else { return nil }
        switch EPTWalker.translate(gpa, access: access, eptp: eptp, physicalAddressBits: vmx.capabilities.physicalAddressBits,
                                   memory: ram, setAccessedDirty: true) {
        case let .success(t) where t.physical < UInt64(memory.size):
            try mapRun(t, eptp: eptp, l2: l2)
            return nil
        case .success:
            return nil
        case let .failure(.violation(qualification)):
            return NestedExit(reason: .eptViolation, qualification: qualification, guestPhysical: gpa, guestLinear: linear)
        case .failure(.misconfiguration):
            return NestedExit(reason: .eptMisconfiguration, guestPhysical: gpa)
        }
    }

    /// Before L2 runs: the page of its first instruction, and the pages an
    /// event delivery reads without an instruction fetch of its own, the
    /// IDT (its first two pages cover all 256 gates), the GDT's first page
    /// and the stack page below RSP. KVM turns a delivery that meets an
    /// address with no slot into a triple fault, where the SDM has an EPT
    /// violation during delivery; pages EPT12 maps are therefore in EPT02
    /// before they are needed.
    ///
    /// For the event the entry injects, the gate's page must be there: when
    /// EPT12 does not map it, the result is the EPT violation or
    /// misconfiguration the delivery meets (SDM 28.2.4), L2's first exit.
    func mapEntryPages(of state: CPUState, injecting event: UInt64, l2: L2Machine, vmcs: VMCS12) throws(KVMError) -> NestedExit? {
        guard case let .ept(eptp) = L2PhysicalMap(vmcs) else { return nil }
        let read = EPTWalker.Access(read: true)
        let code = state.cs.base &+ state.rip, stack = state.ss.base &+ state.gprs[4] &- 1
        // The same pages under the same paging as last time: done already.
        // (A page EPT12 maps only since then is picked up once these change.)
        let key = [eptp, state.cr0, state.cr3, state.cr4, state.efer, state.idtr.base, UInt64(state.idtr.limit),
                   state.gdtr.base, UInt64(state.gdtr.limit), state.tr.base, code >> 12, stack >> 12]
        if l2.premapped != key {
            _ = try mapL2Page(code, access: EPTWalker.Access(fetch: true), state: state, l2: l2, eptp: eptp)
            let idtEnd = state.idtr.base &+ min(UInt64(state.idtr.limit), 0xfff)   // 256 gates at most
            for page in stride(from: state.idtr.base & ~0xfff, through: idtEnd & ~0xfff, by: 0x1000) {
                _ = try mapL2Page(page, access: read, state: state, l2: l2, eptp: eptp)
            }
            // Reads, so that A/D tracking marks a page dirty only when L2 writes it.
            for page in [stack] + stackSwitchPages(state) {
                _ = try mapL2Page(page, access: read, state: state, l2: l2, eptp: eptp)
            }
            if state.protectedMode {
                let gdtEnd = state.gdtr.base &+ UInt64(state.gdtr.limit)
                for page in stride(from: state.gdtr.base & ~0xfff, through: gdtEnd & ~0xfff, by: 0x1000) {
                    _ = try mapL2Page(page, access: read, state: state, l2: l2, eptp: eptp)
                }
            }
            l2.premapped = key
        }
        guard event & (1 << 31) != 0 else { return nil }
        // The gate (SDM Vol. 3A 6.10-6.14; the IVT in real mode).
        let size: UInt64 = !state.protectedMode ? 4 : state.longModeActive ? 16 : 8
        let offset = (event & 0xff) * size
        guard offset + size - 1 <= UInt64(state.idtr.limit) else { return nil }   // beyond the limit: KVM's #GP
        return try mapL2Page(state.idtr.base &+ offset, access: read, state: state, l2: l2, eptp: eptp)
    }

    /// INVEPT drops the EPT02 slots built from the EPTPs it names, so the
    /// next L2 access rebuilds them from the current EPT12 (SDM 29.4.3.1).
    /// INVVPID has nothing to drop: L0 keeps no linear translations for L2.
    func invalidate(_ invalidation: Invalidation) {
        guard let l2 = l2Machine, case let .ept(eptp)? = l2.builtFor else { return }
        let addressMask: UInt64 = ~0xfff
        switch invalidation {
        case let .eptSingleContext(target) where target & addressMask != eptp & addressMask:
            return
        case .eptSingleContext, .eptAllContexts:
            try? l2.dropAll()
            l2.builtFor = nil
        default:
            return
        }
    }

    /// L1's MSR bitmaps become the L2 VM's MSR filter (SDM 25.6.9): the
    /// accesses L1 intercepts exit to L0, which reflects them; without
    /// bitmaps every access does. MSRs L0 emulates for L1's platform exit too,
    /// so L0 can answer them as L1's platform would. Rebuilt only when the
    /// bitmap (or its use) changed since the last entry.
    func updateMSRFilter(of l2: L2Machine, for vmcs: VMCS12) throws(KVMError) {
        let useBitmaps = vmcs.proc.contains(.useMSRBitmaps)
        // A bitmap that is not RAM reads as all ones: everything exits.
        let bitmap = useBitmaps ? (ram.read(vmcs.read(.msrBitmap) ?? 0, count: 4096) ?? [UInt8](repeating: 0xff, count: 4096)) : []
        var key: UInt64 = useBitmaps ? 0xcbf2_9ce4_8422_2325 : 0
        for b in bitmap { key = (key ^ UInt64(b)) &* 0x100_0000_01b3 }       // FNV-1a
        guard key != l2.msrFilterKey else { return }
        l2.msrFilterKey = key
        guard useBitmaps else {
            // KVM refuses a deny-everything filter without ranges (EINVAL): give
            // it one range that denies too.
            return try l2.vm.setMSRFilter(defaultAllow: false, ranges: [.init(base: 0, reads: true, writes: true, allow: [0])])
        }
        func allow(_ offset: Int) -> [UInt8] { bitmap[offset..<offset + 1024].map { ~$0 } }
        var readLow = allow(0), writeLow = allow(2048)
        let apicBase = Int(MSRIndex.apicBase)
        readLow[apicBase / 8] &= ~UInt8(1 << (apicBase % 8))
        writeLow[apicBase / 8] &= ~UInt8(1 << (apicBase % 8))
        // L2's writes to the MSRs that hold guest-state fields come to L0,
        // which then knows their values at exit without asking KVM.
        for index in Self.guestStateMSRs { writeLow[Int(index) / 8] &= ~UInt8(1 << (index % 8)) }
        try l2.vm.setMSRFilter(defaultAllow: false, ranges: [
            .init(base: 0, reads: true, writes: false, allow: readLow),
            .init(base: 0, reads: false, writes: true, allow: writeLow),
            .init(base: 0xc000_0000, reads: true, writes: false, allow: allow(1024)),
            .init(base: 0xc000_0000, reads: false, writes: true, allow: allow(3072)),
        ])
    }

    // MARK: L2 exits

    var l2State: CPUState { l2Machine.map { CPUState($0.vcpu) } ?? CPUState() }

    /// One exit of the L2 VM: L1 wants it (reflect), or L0 handles it as
    /// L1's platform would.
    func handleL2(_ exit: VCPUExit, note: inout ExitNote) -> RunOutcome? {
        guard let l2 = l2Machine, let vmcs = vmx.current else { return .unhandledExit("L2 exit without L2") }
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
            return reflect(NestedExit(reason: .tripleFault), state: l2State, note: &note)
        case let .internalError(e):
            note.kind = .internalError
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
            if write, Self.guestStateMSRs.contains(m.index) {
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

    // MARK: Reflection

    /// Completes whatever KVM left pending for L2 (an IN or MMIO read) without
    /// running it, so its state is consistent before it is saved.
    func completePending(_ l2: L2Machine) {
        l2.vcpu.finishPendingExit()
    }

    /// An I/O exit L1 asked for (reason 30, qualification per Table 28-5).
    func reflectIO(_ io: IOExit, l2: L2Machine, note: inout ExitNote) -> RunOutcome? {
        let before = l2State
        completePending(l2)
        var state = l2State
        let length: Int, bytes: [UInt8]
        if state.rip != before.rip {
            length = Int(state.rip &- before.rip)                 // an IN: retired just now
            bytes = l2Bytes(at: state.cs.base &+ before.rip, count: length, state: state) ?? []
        } else {
            (length, bytes) = outInstruction(io, endingAt: before) // an OUT: KVM retired it already
        }
        state.rip = state.rip &- UInt64(length)
        let encoding = ExitRouting.ioEncoding(bytes)
        let q = ExitRouting.ioQualification(port: io.port, size: Int(io.size), input: io.direction == .input,
                                            string: encoding.string || io.count > 1, rep: encoding.rep,
                                            immediate: encoding.immediate)
        return reflect(NestedExit(reason: .ioInstruction, qualification: q, instructionLength: length), state: state, note: &note)
    }

    func l2Bytes(at linear: UInt64, count: Int, state: CPUState) -> [UInt8]? {
        guard case let .success(bytes) = PageWalker.readLinear(linear, count: count, access: MemoryAccess(), state: state,
                                                               memory: L2PhysicalMemory(machine: self)) else { return nil }
        return bytes
    }

    /// The OUT that ends at L2's RIP: its length, from the encodings that
    /// match the access (SDM Vol. 2B "OUT": EE/EF with DX, E6/E7 ib with an
    /// immediate, 66 for 16-bit), and its bytes.
    func outInstruction(_ io: IOExit, endingAt state: CPUState) -> (length: Int, bytes: [UInt8]) {
        let linear = state.cs.base &+ state.rip
        guard linear >= 3, let bytes = l2Bytes(at: linear - 3, count: 3, state: state) else { return (1, []) }
        let wide: UInt8 = io.size == 1 ? 0 : 1
        let imm = bytes[2] == UInt8(truncatingIfNeeded: io.port) && io.port < 0x100 && bytes[1] == 0xe6 | wide
        var length = 1
        if io.size == 2, imm, bytes[0] == 0x66 {
            length = 3
        } else if io.size == 2, bytes[1] == 0x66, bytes[2] == 0xef {
            length = 2
        } else if imm, io.size != 2 {
            length = 2
        }
        return (length, Array(bytes.suffix(length)))
    }

    /// A VMX instruction executed by L2: reasons 18-28, 50, 53 with the
    /// instruction information and the displacement as qualification (SDM 28.2).
    func reflectInstruction(_ bytes: InstructionBytes, note: inout ExitNote) -> RunOutcome? {
        let state = l2State
        guard case let .success(insn) = VMXDecoder.decode(bytes.array, state: state) else {
            return .unhandledExit("L2 emulation failure, bytes " + bytes.array.map { hex($0, digits: 2) }.joined(separator: " "))
        }
        let exit = NestedExit(reason: insn.instruction.exitReason, qualification: insn.exitQualificationDisplacement,
                              instructionLength: insn.length, instructionInfo: insn.instructionInformation())
        return reflect(exit, state: state, note: &note)
    }

    /// VM exit to L1 (SDM 28): save L2 into VMCS12, record the exit, load
    /// L1's host state. The exit starts an episode that lasts until the next
    /// VM entry.
    func reflect(_ exit: NestedExit, state: CPUState, note: inout ExitNote) -> RunOutcome? {
        guard var vmcs = vmx.current else { return .unhandledExit("VM exit without a current VMCS") }
        if let l2 = l2Machine {
            stopPreemptionTimer(l2, into: &vmcs)
            vmcs.write(.guestActivityState, l2.halted ? 1 : 0)      // 28.3.4: HLT or active
            saveGuestMSRs(l2, into: &vmcs)
        }
        // 28.2.4: an event still in delivery goes to L1, which must
        // re-inject it; L2's vCPU forgets it.
        var exit = exit
        if exit.vectoring == nil, let event = state.eventInDelivery, let l2 = l2Machine {
            exit.vectoring = event
            if let entry = l2.entryEvent, entry.event.vector == event.vector, entry.rip == state.rip {
                // The entry's own event keeps the type L1 gave it (KVM makes
                // INT1 a #DB), and a software one the VM-entry instruction length.
                exit.vectoring = entry.event
                if entry.event.kind.isSoftware { exit.instructionLength = entry.length }
            }
            l2.vcpu.events.forgetInjectedEvent()
        }
        StateTransfer.saveGuestState(state, into: &vmcs)
        StateTransfer.recordExit(exit, into: &vmcs)
        // 28.4: the VM-exit MSR-store list takes L2's values.
        if let l2 = l2Machine, let address = vmcs.read(.exitMSRStoreAddress),
           let list = msrList(at: address, count: vmcs.read(.exitMSRStoreCount) ?? 0), !list.isEmpty {
            for (i, value) in l2.vcpu.getMSRs(list.map(\.index)).enumerated() {
                guard let value else { return .unhandledExit("VMX abort (SDM 28.7): L2's MSR \(hex(list[i].index)) cannot be stored") }
                _ = ram.store(value, at: address + 16 * UInt64(i) + 8)
            }
        }
        loadHostMSRs(vmcs)                                          // 28.5.1, before the list (28.6)
        // 28.6: the VM-exit MSR-load list, into L1 (MSRs L0 emulates go to L0).
        if let list = msrList(at: vmcs.read(.exitMSRLoadAddress) ?? 0, count: vmcs.read(.exitMSRLoadCount) ?? 0) {
            for (index, value) in list where readMSR(index) != nil || index == VMXMSR.featureControl {
                guard writeMSR(index, value) else { return .unhandledExit("VMX abort (SDM 28.7): loading MSR \(hex(index)) failed") }
            }
            let forKVM = list.filter { readMSR($0.index) == nil && $0.index != VMXMSR.featureControl }
            if vcpu.setMSRs(forKVM) < forKVM.count { return .unhandledExit("VMX abort (SDM 28.7): an exit MSR-load entry failed") }
        }
        let host = StateTransfer.hostState(from: vmcs, l2: state, l1: cpuState)
        vmx.current = vmcs
        host.storeRegistersAndSegments(into: vcpu)
        activeLevel = 1
        episodeCounter += 1
        currentEpisode = episodeCounter
        note.vmxReason = UInt32(exit.reason.rawValue)
        note.handler = .reflected
        note.episode = currentEpisode
        return nil
    }
}
