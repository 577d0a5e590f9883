import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// VM exits L0 reflects to L1 (SDM Vol. 3C chapter 28): saving L2, recording
/// the exit, loading L1's host state.
extension Machine {
    /// Completes whatever KVM left pending for L2 (an IN or MMIO read) without
    /// running it, so its state is consistent before it is saved.
    func completePending(_ l2: L2Machine) {
        l2.vcpu.finishPendingExit()
    }

    /// An I/O exit L1 asked for (reason 30, qualification per Table 28-5).
    func reflectIO(_ io: IOExit, l2: L2Machine, note: inout ExitNote) -> RunOutcome? {
        let before = l2State
        // KVM has retired an OUT at its exit: its bytes end at RIP. A single
        // OUT needs no completing run either, as the next run starts where
        // L0 puts RIP (KVMTests.testAnOUTNeedsNoCompletingRunAndAnINDoes);
        // that run costs about 10 µs on our hosts, a third of the reflected
        // exit (Bench/kvm-nested-floor.c, docs/PERFORMANCE.md). INs and
        // string OUTs are completed first.
        let out = io.direction == .output ? outInstruction(io, endingAt: before) : nil
        let retired = out.map { io.count == 1 && !$0.bytes.isEmpty && !ExitRouting.ioEncoding($0.bytes).string } ?? false
        if !retired { completePending(l2) }
        var state = retired ? before : l2State
        let length: Int, bytes: [UInt8]
        if state.rip != before.rip {
            // An IN, retired just now: it starts at the RIP it had. Its length
            // comes from its bytes, never from the two RIPs, which wrap.
            let fetched = InstructionFetch.bytes(at: before.cs.base &+ before.rip, cpu: before,
                                                 memory: L2SlotMemory(machine: self, l2: l2))
            length = X86Decoders.ioInstructionLength(fetched, mode64: before.mode64) ?? 1
            bytes = Array(fetched.prefix(length))
            state.rip = before.rip
        } else {
            (length, bytes) = out ?? outInstruction(io, endingAt: before)
            state.rip = before.wrappingRIP(before.rip &- UInt64(length))
        }
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
        guard linear >= 3, let l2 = l2Machine,
              case let .success(bytes) = PageWalker.readLinear(linear - 3, count: 3, access: MemoryAccess(), state: state,
                                                               memory: L2SlotMemory(machine: self, l2: l2)) else { return (1, []) }
        let length = X86Decoders.outLength(endingWith: bytes, port: io.port, size: Int(io.size))
        return (length, Array(bytes.suffix(length)))
    }

    /// A VMX instruction executed by L2: reasons 18-28, 50, 53 with the
    /// instruction information and the displacement as qualification (SDM 28.2).
    func reflectInstruction(_ reported: InstructionBytes, note: inout ExitNote) -> RunOutcome? {
        let state = l2State
        let bytes = InstructionFetch.completing(reported.array, cpu: state, memory: L2PhysicalMemory(machine: self))
        guard case let .success(insn) = VMXDecoder.decode(bytes, state: state) else {
            // A CPUID-gated instruction KVM could not run is #UD, as at level
            // 1 (docs/PATCHING.md); so are RDTSCP and RDPID with "enable
            // RDTSCP" 0 (SDM 26.3).
            if X86Decoders.cpuidGated(bytes, mode64: state.mode64) != nil {
                return raiseInL2(.invalidOpcode, state: state, note: &note)
            }
            if let int = SoftwareInterrupt(bytes, cpu: state) { return l2SoftwareInterrupt(int, state: state, note: &note) }
            return .unhandledExit("L2 emulation failure, bytes " + bytes.map { hex($0, digits: 2) }.joined(separator: " "))
        }
        let exit = NestedExit(reason: insn.instruction.exitReason, qualification: insn.exitQualification(state: state),
                              instructionLength: insn.length, instructionInfo: insn.instructionInformation())
        return reflect(exit, state: state, note: &note)
    }

    /// VM exit to L1 (SDM 28): save L2 into VMCS12, record the exit, load
    /// L1's host state. The exit starts an episode that lasts until the next
    /// VM entry.
    func reflect(_ exit: NestedExit, state given: CPUState, note: inout ExitNote) -> RunOutcome? {
        guard let vmcs = vmx.current, let l2 = l2Machine else { return .unhandledExit("VM exit without a current VMCS") }
        // An exit that comes before the step over an original instruction
        // (docs/PATCHING.md): a register L0 changed for it has its value back.
        var state = given
        if let restoring = l2.originalStep?.restoring {
            state.gprs[restoring.register] = restoring.value
            l2.originalStep?.restoring = nil
        }
        let timer = l2.preemption
        l2.preemption = nil                                         // it stops counting as L2 leaves
        l2.kick?.disarm()                                           // and L2's host timer has nothing to kick
        let plan = VMTransitions.exit(exit, l2: state, l1: cpuState, vmcs: vmcs, entryEvent: l2.entryEvent, halted: l2.halted,
                                      preemptionTimer: timer, guestMSRs: guestMSRValues(l2, saving: vmcs.exitControls),
                                      pendingDebugExceptions: l2.debugExceptions,
                                      memory: ram, maxMSRListEntries: maxMSRListEntries, wrmsrFaults: Self.guestWRMSRFaults)
        l2.debugExceptions = 0
        l2.monitorTrap = false                                      // an instruction that exits has none (26.5.2)
        // 28.2.4: an event still in delivery goes to L1, which must
        // re-inject it; L2's vCPU forgets it.
        if exit.vectoring == nil, state.eventInDelivery != nil { l2.vcpu.events.forgetInjectedEvent() }
        // 28.4: the VM-exit MSR-store list takes L2's values, in order.
        let store = plan.msrStore
        for (entry, value) in zip(store.entries, store.entries.isEmpty ? [] : l2.vcpu.getMSRs(store.entries.map(\.index))) {
            guard let value, ram.store(value, at: entry.valueAddress) else { return vmxAbort(.savingGuestMSR, vmcs: vmcs) }
        }
        if let abort = store.abort { return vmxAbort(abort, vmcs: vmcs) }
        var after = plan.vmcs
        // 28.3.1: DR7 is saved under "save debug controls". DR6 is not
        // switched, so L1 sees what L2 left there, except after a #DB exit,
        // which leaves DR6 as it was (28.2.1).
        let debug = nestedDebugRegisters == .shared ? try? l2.vcpu.debugRegisters() : nil
        if after.exitControls.contains(.saveDebugControls), let dr7 = debug?.dr7 ?? l2.loadedDR7 { after.write(.guestDR7, dr7) }
        let dr6 = exit.isDebugException ? l2.entryDR6 : debug?.dr6
        if let outcome = loadHost(plan.hostLoad, vmcs: after, dr6: dr6) { return outcome }
        running = .l1
        episodeCounter += 1
        currentEpisode = episodeCounter
        note.vmxReason = UInt32(plan.exit.reason.rawValue)
        note.handler = .reflected
        note.episode = currentEpisode
        return nil
    }

    /// An exception that L2's instruction at `state` raises (a fault):
    /// an exception exit if L1's exception bitmap asks for it (SDM 26.2),
    /// else delivered through L2's own IDT.
    func raiseInL2(_ exception: X86Exception, state: CPUState, note: inout ExitNote) -> RunOutcome? {
        guard let vmcs = vmx.current, let l2 = l2Machine else { return .unhandledExit("L2 exception without a current VMCS") }
        note.value = UInt64(exception.vector)
        if ExitRouting.wantsException(Int(exception.vector), errorCode: exception.errorCode.map(UInt64.init), vmcs: vmcs) {
            let info = DeliveredEvent(kind: .hardwareException, vector: exception.vector,
                                      errorCode: exception.errorCode).interruptionInformation
            return reflect(NestedExit(reason: .exceptionOrNMI, interruptionInfo: info,
                                      interruptionErrorCode: exception.errorCode ?? 0), state: state, note: &note)
        }
        state.storeRegistersAndSegments(into: l2.vcpu)
        inject(exception, into: l2.vcpu)
        l2.monitorTrap = l2.breakpoints.monitorTrapping             // after the delivery (26.5.2)
        return nil
    }

    /// Loads L1's host state (SDM 28.5), the host MSRs before the VM-exit
    /// MSR-load list (28.5.1, 28.6), and makes `vmcs` current: at a VM exit
    /// and at a failed VM entry (27.8). A VMX abort if the list fails.
    /// `dr6` is what L2 leaves in DR6, which VMX does not switch.
    func loadHost(_ load: VMTransitions.HostLoad, vmcs: VMCS12, dr6: UInt64? = nil) -> RunOutcome? {
        loadHostMSRs(load.hostMSRs)
        if nestedDebugRegisters == .shared, var debug = try? vcpu.debugRegisters() {
            let before = debug
            debug.dr7 = 0x400                                                 // 28.5.1: DR7 = 400H
            if let dr6 { debug.dr6 = dr6 }
            if debug != before { try? vcpu.setDebugRegisters(debug) }
        }
        guard loadL1MSRs(load.msrLoad.entries) else { return vmxAbort(.loadingHostMSR, vmcs: vmcs) }
        if let abort = load.msrLoad.abort { return vmxAbort(abort, vmcs: vmcs) }
        // An enlightened VMCS gets the exit's fields in its page (TLFS
        // "Enlightened VMCS"; docs/EVMCS.md): L1 reads them as memory.
        if vmcs.isEnlightened { EnlightenedVMCS.writeBack(vmcs, to: vmcs.address, memory: ram) }
        vmx.current = vmcs
        load.host.storeRegistersAndSegments(into: vcpu)
        return nil
    }

    /// A VMX abort (SDM 28.7): the indicator goes to offset 4 of L1's VMCS
    /// region, and L1's processor shuts down, which ends the run.
    func vmxAbort(_ abort: VMXAbort, vmcs: VMCS12) -> RunOutcome {
        _ = ram.store(abort.rawValue, at: vmcs.address &+ VMCS12Layout.abortOffset)
        return .vmxAbort(indicator: abort.rawValue)
    }
}
