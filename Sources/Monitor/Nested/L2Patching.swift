import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// L2's view of the loaded images' code, patched at their sensitive
/// instructions so that L2 reaches L0 there (docs/PATCHING.md). L1's
/// memory is never changed: L2 runs a private, read-only copy of each such
/// page, with INT3 at every site, which KVM reports as an emulation failure
/// at CPL 0.
extension Machine {
    /// Before the EPT12 run L2-physical [start, end), backed by L1-physical
    /// `l1Start` onwards, goes into EPT02: each page of it that holds an
    /// image's code page with sites, unchanged, gets a slot of its own with
    /// the copy, wherever L1 put the page (matched by content); so does the
    /// page of the handler trap, with INT3 on L2's #UD handler. True when it
    /// made one (the run must then be cut around it).
    func mapPatchedCopies(_ start: UInt64, _ end: UInt64, l1Start: UInt64, l2: L2Machine) throws(KVMError) -> Bool {
        let pageMask = UInt64(PatchTable.pageSize - 1)
        var first = start & ~pageMask, last = end
        if patches.pages.isEmpty {
            // Only the handler trap's page can get a copy.
            guard let trap = l2.handlerTrap, trap >= first, trap < end else { return false }
            first = trap & ~pageMask
            last = first + 1
        }
        var made = false
        var page = first
        while page < last {
            defer { page += UInt64(PatchTable.pageSize) }
            guard !l2.unpatched.contains(page), l2.slot(containing: page) == nil else { continue }
            let l1 = l1Start &+ (page &- start)
            guard let bytes = memory.bytes(at: l1, count: PatchTable.pageSize).map(UnsafeRawBufferPointer.init) else { continue }
            let image = (patches.page(at: page, holding: bytes) ?? patches.page(holding: bytes)).flatMap {
                $0.traps(l2.patchedClasses) ? $0 : nil
            }
            let trap = l2.handlerTrap.flatMap { $0 & ~pageMask == page ? Int($0 & pageMask) : nil }
            guard image != nil || trap != nil else { continue }
            var copy = image?.patched(bytes, classes: l2.patchedClasses) ?? [UInt8](bytes)
            if let trap { copy[trap] = PatchTable.trap }
            try l2.mapCopy(at: page, l1: l1, bytes: copy, entry: image ?? PatchTable.Page(wholePage: bytes))
            made = true
        }
        return made
    }

    /// Maps the page at L2-physical `page` afresh, on its own: the slot that
    /// holds it is cut around it, and `mapPatchedCopies` decides what L2
    /// sees there. A page that was a copy and gets none stays unmapped until
    /// L2's next touch maps it with EPT12's permissions.
    func remapPage(_ page: UInt64, l2: L2Machine) throws(KVMError) {
        guard let slot = l2.slot(containing: page) else { return }
        let wasCopy = l2.copy(containing: page) != nil
        let size = UInt64(PatchTable.pageSize), l1 = slot.l1 + (page - slot.base)
        try l2.unmap(slot)
        if page > slot.base {
            try l2.map(base: slot.base, size: page - slot.base, l1: slot.l1, readOnly: slot.readOnly, memory: memory)
        }
        if slot.end > page + size {
            try l2.map(base: page + size, size: slot.end - page - size, l1: l1 + size, readOnly: slot.readOnly, memory: memory)
        }
        if try !mapPatchedCopies(page, page + size, l1Start: l1, l2: l2), !wasCopy {
            try l2.map(base: page, size: size, l1: l1, readOnly: slot.readOnly, memory: memory)
        }
    }

    /// At each VM entry: a copy whose page L1 has changed since is dropped,
    /// so L2 never runs stale code; its next fetch maps L1's page as it is.
    /// When L1's controls ask for other classes than the copies trap, every
    /// copy goes, and the next fetches patch for the new classes.
    func refreshPatchedCopies(_ l2: L2Machine, vmcs: VMCS12) throws(KVMError) {
        let classes = ExitRouting.trapClasses(vmcs: vmcs)
        if classes != l2.patchedClasses {
            for copy in l2.copies.values { try l2.unmap(copy.slot) }
            l2.patchedClasses = classes
            return
        }
        for copy in l2.copies.values {
            if let bytes = memory.bytes(at: copy.slot.l1, count: PatchTable.pageSize),
               copy.entry.matches(UnsafeRawBufferPointer(bytes)) { continue }
            try l2.unmap(copy.slot)
        }
    }

    /// L2 stopped at an INT3, `state` at the INT3: an emulation failure at
    /// CPL 0, or at CPL 3 its #BP at L2's handler, unwound. When it is one
    /// of L0's, in a patched copy, L0 takes the original instruction from
    /// its site table, never from the copy: nil when it is L2's own.
    func handlePatchedSite(l2: L2Machine, state: CPUState, note: inout ExitNote) -> RunOutcome?? {
        let linear = state.cs.base &+ state.rip
        guard case let .success(gpa) = PageWalker.translate(linear, access: MemoryAccess(fetch: true), state: state,
                                                             memory: L2PhysicalMemory(machine: self), setAccessedDirty: false),
              let copy = l2.copy(containing: gpa) else { return nil }
        if gpa == l2.handlerTrap { return .some(handlerTrapHit(l2: l2, state: state, gpa: gpa, note: &note)) }
        guard let site = copy.entry.site(at: gpa), l2.patchedClasses.contains(site.trapClass) else { return nil }
        l2.preemption?.refund(l2.lastRunNanos)                 // the run to the trap was L0's work
        note.flags.insert(.patchedSite)
        note.address = gpa
        guard let vmcs = vmx.current else { return .some(.unhandledExit("L2's \(site.instruction) without a current VMCS")) }
        return .some(patchedSite(site, gpa: gpa, state: state, vmcs: vmcs, l2: l2, note: &note))
    }

    /// L2 at a trapped site: the faults that come before any exit, then the
    /// exit L1 asked for, else what the instruction does without one
    /// (SDM 26.1, 26.3). What L0 does not carry out itself, KVM runs as the
    /// original instruction (`executeOriginal`).
    func patchedSite(_ site: SensitiveSite, gpa: UInt64, state: CPUState, vmcs: VMCS12, l2: L2Machine,
                     note: inout ExitNote) -> RunOutcome? {
        func undecodable() -> RunOutcome? { .unhandledExit("L2's \(site.instruction) at \(hex(gpa)) does not decode") }
        func exit(_ e: NestedExit) -> RunOutcome? { reflect(e, state: state, note: &note) }
        // MOV CR and MOV DR are privileged in each direction; SMSW's rule is
        // its class's.
        let privileged = site.instruction == .controlRegisterMove || site.instruction == .debugRegisterMove
        switch privileged ? (state.cpl == 0 ? nil : .native) : ExitRouting.precedence(site.trapClass, state: state, vmcs: vmcs) {
        case .native?: return executeOriginal(at: gpa, state: state, l2: l2)
        case .invalidOpcode?: return raiseInL2(.invalidOpcode, state: state, note: &note)
        case nil: break
        }
        switch site.instruction {
        case .rdtsc, .rdtscp:
            // 26.1.3: RDTSC exiting; else 26.3: L1's TSC, plus TSC_OFFSET
            // under "use TSC offsetting". L1's TSC is its vCPU's IA32_TSC;
            // RDTSCP's ECX is L2's IA32_TSC_AUX, as the instruction reads it.
            if ExitRouting.wantsExit(site.trapClass, vmcs: vmcs) {
                return exit(NestedExit(reason: site.instruction == .rdtsc ? .rdtsc : .rdtscp, instructionLength: site.length))
            }
            guard let l1TSC = vcpu.getMSRs([MSRIndex.tsc]).first ?? nil else {
                return .unhandledExit("reading L1's IA32_TSC for L2's \(site.instruction)")
            }
            var aux: UInt64?
            if site.instruction == .rdtscp {
                guard let value = l2.vcpu.getMSRs([MSRIndex.tscAux]).first ?? nil else {
                    return .unhandledExit("reading L2's IA32_TSC_AUX for its RDTSCP")
                }
                aux = value
            }
            let tsc = ExitRouting.l2TimeStampCounter(l1: l1TSC, vmcs: vmcs)
            completeInL0(state, length: site.length, l2: l2) {
                $0.gprs[.rax] = tsc & 0xffff_ffff
                $0.gprs[.rdx] = tsc >> 32
                if let aux { $0.gprs[.rcx] = aux & 0xffff_ffff }
            }
            note.value = tsc
            return nil
        case .controlRegisterMove:
            guard let move = VMXDecoder.decodeControlRegisterMove(site.bytes, state: state) else { return undecodable() }
            return controlRegisterMove(move, state: state, vmcs: vmcs, gpa: gpa, l2: l2, note: &note)
        case .debugRegisterMove:
            guard let move = VMXDecoder.decodeDebugRegisterMove(site.bytes, state: state) else { return undecodable() }
            if ExitRouting.wantsExit(.movDR, vmcs: vmcs) {
                return exit(NestedExit(reason: .movDR, qualification: ExitRouting.debugRegisterQualification(move),
                                       instructionLength: move.length))
            }
            return executeOriginal(at: gpa, state: state, l2: l2)
        case .lmsw, .smsw:
            guard let access = VMXDecoder.decodeMachineStatusWord(site.bytes, state: state) else { return undecodable() }
            return machineStatusWord(access, state: state, vmcs: vmcs, gpa: gpa, l2: l2, note: &note)
        case .clts:
            switch ExitRouting.clts(vmcs: vmcs) {
            case .exit:
                return exit(NestedExit(reason: .controlRegisterAccess, qualification: ExitRouting.cltsQualification,
                                       instructionLength: site.length))
            case .clearTS:
                return executeOriginal(at: gpa, state: state, l2: l2)
            case .noChange:
                completeInL0(state, length: site.length, l2: l2)
                return nil
            }
        case .invlpg:
            guard let (operand, length) = VMXDecoder.decodeINVLPG(site.bytes, state: state) else { return undecodable() }
            guard ExitRouting.wantsExit(.invlpg, vmcs: vmcs) else { return executeOriginal(at: gpa, state: state, l2: l2) }
            // 28.2.1: the qualification is the operand's linear address.
            let linear: UInt64
            switch operand.linearAddress(state: state, instructionLength: length, size: 1, write: false) {
            case let .success(address): linear = address
            case .failure: linear = operand.effectiveAddress(state: state, instructionLength: length)
            }
            return exit(NestedExit(reason: .invlpg, qualification: linear, instructionLength: length))
        case .invpcid:
            guard let operands = VMXDecoder.decodeINVPCID(site.bytes, state: state) else { return undecodable() }
            guard ExitRouting.wantsExit(.invpcid, vmcs: vmcs) else { return executeOriginal(at: gpa, state: state, l2: l2) }
            return exit(NestedExit(reason: .invpcid, qualification: operands.qualification(state: state), instructionLength: operands.length,
                                   instructionInfo: operands.instructionInformation))
        case .rdrand, .rdseed:
            guard let operand = VMXDecoder.decodeRandomNumber(site.bytes, state: state) else { return undecodable() }
            guard ExitRouting.wantsExit(site.trapClass, vmcs: vmcs) else { return executeOriginal(at: gpa, state: state, l2: l2) }
            return exit(NestedExit(reason: site.instruction == .rdrand ? .rdrand : .rdseed, instructionLength: operand.length,
                                   instructionInfo: operand.instructionInformation))
        case .descriptorTable:
            guard let access = VMXDecoder.decodeDescriptorTable(site.bytes, state: state) else { return undecodable() }
            if ExitRouting.descriptorTablePrecedence(access, state: state) != nil || !ExitRouting.wantsExit(.descriptorTable, vmcs: vmcs) {
                return executeOriginal(at: gpa, state: state, l2: l2)
            }
            return exit(NestedExit(reason: access.exitReason, qualification: access.qualification(state: state), instructionLength: access.length,
                                   instructionInfo: access.instructionInformation))
        case .cpuid, .invd, .xsetbv, .vmcall, .wbinvd, .rdpmc, .monitor, .mwait, .pause:
            // No qualification: MWAIT's bit 0 (the monitor armed) is 0, as
            // KVM runs MONITOR as a no-op or #UD and never arms one.
            guard ExitRouting.wantsExit(site.trapClass, vmcs: vmcs), let reason = ExitRouting.exitReason(site.trapClass) else {
                return executeOriginal(at: gpa, state: state, l2: l2)
            }
            return exit(NestedExit(reason: reason, instructionLength: site.length))
        }
    }

    static let trapFlag: UInt64 = 1 << 8

    /// An instruction L0 carries out for L2 at `state`: `change` applied,
    /// RIP past its `length` bytes, into L2's vCPU.
    func completeInL0(_ state: CPUState, length: Int, l2: L2Machine, _ change: (inout CPUState) -> Void = { _ in }) {
        var after = state
        change(&after)
        after.rip = state.wrappingRIP(state.rip &+ UInt64(length))
        after.storeRegistersAndSegments(into: l2.vcpu)
        l2.monitorTrap = l2.breakpoints.monitorTrapping             // it completed (26.5.2)
    }

    /// When the stepped instruction faulted, the frame its exception pushed
    /// holds RFLAGS with the TF KVM's single step set (measured 2026-12-06:
    /// the handler's IRET then raised a #DB in L2). The frame gets the TF
    /// the instruction had.
    func clearStepTrapFlag(_ site: L2Machine.OriginalStep, l2: L2Machine) {
        let state = l2State
        guard !site.trapFlag, state.rip != site.rip,
              let (frame, address) = ExceptionFrame.pushed(for: site.rip, cs: site.cs, cpu: state, memory: L2PhysicalMemory(machine: self)),
              frame.rflags & Self.trapFlag != 0 else { return }
        let word = state.longModeActive ? 8 : 4
        let value = frame.rflags & ~Self.trapFlag
        _ = PageWalker.writeLinear(address, bytes: [UInt8](littleEndian: value, count: word),
                                   access: MemoryAccess(), state: state, memory: L2PhysicalMemory(machine: self, writable: true),
                                   physicalAddressBits: vmx.capabilities.physicalAddressBits)
    }

    /// MOV to or from CR0, CR3, CR4 or CR8 at a patched site (SDM 26.1.3, 26.3).
    func controlRegisterMove(_ move: ControlRegisterMove, state: CPUState, vmcs: VMCS12, gpa: UInt64, l2: L2Machine,
                             note: inout ExitNote) -> RunOutcome? {
        let cr = move.controlRegister
        let exit = NestedExit(reason: .controlRegisterAccess, qualification: ExitRouting.controlRegisterQualification(move),
                              instructionLength: move.length)
        let operand = state.mode64 ? state.gprs[move.register] : state.gprs[move.register] & 0xffff_ffff
        if cr == 8 {
            // CR8-load/store exiting; else L1's APIC TPR, as L2 runs on L1's
            // processor (Vol. 3A 11.8.6.1; "use TPR shadow" is not offered).
            if ExitRouting.wantsCR8Move(toCR8: move.toControlRegister, vmcs: vmcs) { return reflect(exit, state: state, note: &note) }
            guard move.toControlRegister else {
                let value = ExitRouting.cr8(fromTPR: apic.tpr)
                completeInL0(state, length: move.length, l2: l2) { $0.gprs[move.register] = value }
                return nil
            }
            guard let tpr = ExitRouting.tpr(fromCR8: operand) else { return raiseInL2(.generalProtection(0), state: state, note: &note) }
            apic.tpr = tpr
            completeInL0(state, length: move.length, l2: l2)
            return nil
        }
        if cr == 3 {
            if ExitRouting.wantsCR3Move(toCR3: move.toControlRegister, value: operand, vmcs: vmcs) {
                return reflect(exit, state: state, note: &note)
            }
            return executeOriginal(at: gpa, state: state, l2: l2)
        }
        let actual = cr == 0 ? state.cr0 : state.cr4
        guard move.toControlRegister else {
            // MOV from CR0/CR4: the read shadow for the bits L1 owns.
            let value = ExitRouting.controlRegisterRead(cr, actual: actual, vmcs: vmcs)
            completeInL0(state, length: move.length, l2: l2) { $0.gprs[move.register] = state.mode64 ? value : value & 0xffff_ffff }
            return nil
        }
        if ExitRouting.wantsControlRegisterWrite(cr, value: operand, vmcs: vmcs) { return reflect(exit, state: state, note: &note) }
        // No exit: the bits L1 owns keep their values, and a value that breaks
        // a bit fixed in VMX operation is #GP(0). KVM makes the write itself,
        // from the register holding the merged value for that one step.
        let written = ExitRouting.controlRegisterWritten(cr, value: operand, current: actual, vmcs: vmcs)
        guard ExitRouting.permitsControlRegister(cr, value: written, capabilities: vmx.capabilities, vmcs: vmcs) else {
            return raiseInL2(.generalProtection(0), state: state, note: &note)
        }
        var stepped = state
        stepped.gprs[move.register] = written
        return executeOriginal(at: gpa, state: stepped, l2: l2, restoring: (move.register, state.gprs[move.register]))
    }

    /// LMSW and SMSW at a patched site (SDM 26.1.3, 26.3). A memory operand
    /// L0 cannot read or write is left to KVM, which raises its fault.
    func machineStatusWord(_ access: MachineStatusWordAccess, state: CPUState, vmcs: VMCS12, gpa: UInt64, l2: L2Machine,
                           note: inout ExitNote) -> RunOutcome? {
        let memory = L2PhysicalMemory(machine: self, writable: true)
        func linear(_ m: MemoryOperand, write: Bool) -> UInt64? {
            if case let .success(address) = m.linearAddress(state: state, instructionLength: access.length, size: 2, write: write) {
                return address
            }
            return nil
        }
        if access.load {
            let source: UInt16
            switch access.operand {
            case let .register(r): source = UInt16(truncatingIfNeeded: state.gprs[r])
            case let .memory(m):
                guard let address = linear(m, write: false),
                      case let .success(bytes) = PageWalker.readLinear(address, count: 2, access: MemoryAccess(), state: state,
                                                                        memory: memory) else {
                    return executeOriginal(at: gpa, state: state, l2: l2)
                }
                source = UInt16(bytes.littleEndian())
            }
            if ExitRouting.wantsLMSW(source: source, vmcs: vmcs) {
                var memoryOperand = false
                if case .memory = access.operand { memoryOperand = true }
                return reflect(NestedExit(reason: .controlRegisterAccess,
                                          qualification: ExitRouting.lmswQualification(source: source, memory: memoryOperand),
                                          instructionLength: access.length), state: state, note: &note)
            }
            completeInL0(state, length: access.length, l2: l2) {
                $0.cr0 = ExitRouting.lmswResult(source: source, current: state.cr0, vmcs: vmcs)
            }
            return nil
        }
        let value = ExitRouting.controlRegisterRead(0, actual: state.cr0, vmcs: vmcs)
        if case let .memory(m) = access.operand {
            guard let address = linear(m, write: true),
                  case .success = PageWalker.writeLinear(address, bytes: [UInt8](littleEndian: value, count: 2),
                                                         access: MemoryAccess(), state: state, memory: memory,
                                                         physicalAddressBits: vmx.capabilities.physicalAddressBits) else {
                return executeOriginal(at: gpa, state: state, l2: l2)
            }
        }
        completeInL0(state, length: access.length, l2: l2) {
            guard case let .register(r) = access.operand else { return }
            switch access.operandSize {
            case 2: $0.gprs[r] = (state.gprs[r] & ~0xffff) | (value & 0xffff)
            case 4: $0.gprs[r] = value & 0xffff_ffff
            default: $0.gprs[r] = value
            }
        }
        return nil
    }

    /// A site whose instruction L1 does not intercept: KVM runs the original
    /// one, with its own checks and faults. L1's page stands in for the copy
    /// (read-only) while L0 single-steps L2 over it, and the copy comes back
    /// at the step's debug exit (`restorePatchedCopy`). `state` is L2 at the
    /// site (unwound, for a #BP from CPL 3).
    /// `restoring` is a register L0 changed for the step, with its value;
    /// `atHandler`: the step is past the handler trap.
    func executeOriginal(at gpa: UInt64, state: CPUState, l2: L2Machine, restoring: (Int, UInt64)? = nil,
                         atHandler: Bool = false) -> RunOutcome? {
        guard let copy = l2.copySlot(containing: gpa) else { return .unhandledExit("no patched copy at \(hex(gpa))") }
        do {
            state.storeRegistersAndSegments(into: l2.vcpu)
            try l2.unmap(copy)
            try l2.map(base: copy.base, size: copy.size, l1: copy.l1, readOnly: true, memory: memory)
            l2.originalStep = L2Machine.OriginalStep(page: copy.base, rip: state.rip, cs: state.cs.selector,
                                                     trapFlag: state.rflags & Self.trapFlag != 0, restoring: restoring,
                                                     atHandler: atHandler)
            try l2.breakpoints.stepPastHandler()
        } catch {
            return .unhandledExit("running L2's original instruction at \(hex(gpa)): \(error)")
        }
        return nil
    }

    /// After the step over an original instruction (or when L1 enters L2
    /// before it came): the patched copy replaces L1's page again. After a
    /// step, the pages an event delivery needs are mapped again for L2's
    /// paging as it is now: a MOV to CR3 may have switched it (the entry's
    /// pre-mapping, docs/ARCHITECTURE.md; issue 11 item 18).
    func restorePatchedCopy(_ l2: L2Machine, stepped: Bool = false) throws(KVMError) {
        guard let step = l2.originalStep else { return }
        l2.originalStep = nil
        if stepped {
            if let restoring = step.restoring {
                var regs = CPUState(l2.vcpu)
                regs.gprs[restoring.register] = restoring.value
                regs.storeRegisters(into: l2.vcpu)
            }
            clearStepTrapFlag(step, l2: l2)
            l2.preemption?.refund(l2.lastRunNanos)             // and so was the step
        }
        let page = step.page
        guard let original = l2.slot(containing: page) else { return }
        try l2.unmap(original)
        _ = try mapPatchedCopies(page, page + UInt64(PatchTable.pageSize), l1Start: original.l1, l2: l2)
        if stepped, let vmcs = vmx.current { _ = try mapEntryPages(of: l2State, injecting: nil, l2: l2, vmcs: vmcs) }
    }
}
