import NestedVMX
import VMXArch

/// `FuzzTarget.vmcsEntry` and `FuzzTarget.exitRouting`. Input: the VMCS12
/// region (the first page of guest RAM), the parameters and CPU states, then
/// the rest of guest RAM (bitmaps, MSR lists, the tables the checks read).
/// A region alone, with everything after it zero, is a complete input.
enum VMCSTargets {
    static let maxMSRListEntries = 512

    /// Loads the region at 0 as VMPTRLD does; every field must then read
    /// within its width (SDM 25.11.2, Appendix B).
    static func load(_ memory: ArrayMemory) -> VMCS12? {
        guard let vmcs = VMCS12(loadingFrom: 0, memory: memory) else { return nil }
        for field in VMCSField.allFields {
            guard let value = vmcs.read(field) else { continue }
            invariant(value & ~field.width.valueMask == 0, "\(field) holds \(value), wider than its width")
        }
        return vmcs
    }

    static func entry(_ data: [UInt8]) {
        var input = FuzzInput(data)
        let region = input.take(VMCS12Layout.regionSize)
        let launch = !input.bool()
        let platform = EntryPlatform(processorInIA32eMode: !input.bool(), linearAddressBits: input.bool() ? 57 : 48)
        let l1 = FuzzCPU.state(&input)
        let memory = FuzzCPU.memory(region + input.rest())
        guard let vmcs = load(memory) else { return }
        let capabilities = VMXCapabilities.terrapin()

        let context = EntryContext(vmcs: vmcs, capabilities: capabilities, memory: memory, launch: launch, platform: platform)
        let failure = VMEntryChecker.check(context)
        invariant(failure == VMEntryChecker.allFailures(context).first, "the first failure depends on how it is asked")
        var memo = EntryCheckMemo()
        invariant(VMEntryChecker.check(context, memo: &memo) == failure, "the memo's first entry differs from the full run")
        invariant(VMEntryChecker.check(context, memo: &memo) == failure, "the memo's second entry differs from the full run")
        switch failure {
        case let .guestState(_, q)?:
            invariant([0, 2, 3, 4].contains(q), "guest-state qualification \(q) (SDM 27.8)")
        case let .msrLoad(index)?:
            let count = Int(UInt32(truncatingIfNeeded: vmcs.read(.entryMSRLoadCount) ?? 0))
            invariant((1...count).contains(index), "MSR-load failure at entry \(index) of \(count)")
        case .controls?, .hostState?:
            break
        case nil:
            let plan = VMTransitions.entry(vmcs: vmcs, l1: l1, launch: launch, memory: memory, maxMSRListEntries: maxMSRListEntries)
            invariant(plan.guest.rip == vmcs.read(.guestRIP), "L2's RIP is not GUEST_RIP")
            invariant(plan.msrLoadList.count == Int(vmcs.read(.entryMSRLoadCount) ?? 0), "MSR-load list cut short after the checks passed")
            invariant(plan.vmcs.launched == (launch || vmcs.launched), "launch state")
            invariant((plan.vmcs.read(.entryInterruptionInfo) ?? 0) & 1 << 31 == 0, "the entry's event was not consumed (27.6)")
        }
    }

    static func exitRouting(_ data: [UInt8]) {
        var input = FuzzInput(data)
        let region = input.take(VMCS12Layout.regionSize)
        let port: UInt16 = input.integer()
        let size = [1, 2, 4][Int(input.u8() % 3)]
        let msr: UInt32 = input.bool() ? input.integer() : UInt32(input.integer() as UInt16) | (input.bool() ? 0xc000_0000 : 0)
        let write = input.bool()
        let vector = Int(input.u8() % 40)
        let errorCode: UInt64? = input.bool() ? UInt64(input.integer() as UInt32) : nil
        let reason = VMXExitReason(UInt16(input.u8() % 80))
        let halted = input.bool()
        let timerTicks: UInt32? = input.bool() ? input.integer() : nil
        let pending = L2Pending(deliveryFault: input.bool(), injectedEventWaiting: input.bool(), canStopAfterDelivery: input.bool(),
                                preemptionTimer: timerTicks.map { PreemptionTimer(ticks: $0, tickNanos: 1) },
                                l1InterruptPending: input.bool(), halted: input.bool(),
                                l1TimerDue: input.bool() ? input.integer() : nil)
        let l1 = FuzzCPU.state(&input)
        var l2 = FuzzCPU.state(&input)
        if input.bool() { l2.eventInDelivery = DeliveredEvent(interruptionInformation: input.integer() | 1 << 31, errorCode: input.integer()) }
        let exit = NestedExit(reason: reason, qualification: input.integer(), instructionLength: Int(input.u8() % 16))
        let memory = FuzzCPU.memory(region + input.rest())
        guard let vmcs = load(memory) else { return }

        // SDM 26.1.3: I/O bitmaps, or unconditional I/O exiting.
        let io = ExitRouting.wantsIO(port: port, size: size, vmcs: vmcs, memory: memory)
        if vmcs.proc.contains(.useIOBitmaps) {
            let expected = (0..<size).contains { offset in
                let p = Int(port) + offset
                guard p <= 0xffff else { return true }
                let base = (p < 0x8000 ? vmcs.read(.ioBitmapA) : vmcs.read(.ioBitmapB)) ?? 0
                let byte = memory.load(UInt8.self, at: base &+ UInt64((p & 0x7fff) / 8)) ?? 0xff
                return byte >> ((p & 0x7fff) % 8) & 1 != 0
            }
            invariant(io == expected, "I/O port \(port) size \(size): \(io)")
        } else {
            invariant(io == vmcs.proc.contains(.unconditionalIOExiting), "I/O without bitmaps: \(io)")
        }
        // SDM 26.1.3: MSRs outside both bitmap ranges always exit.
        let wantsMSR = ExitRouting.wantsMSR(msr, write: write, vmcs: vmcs, memory: memory)
        if !(0...0x1fff).contains(msr) && !(0xc000_0000...0xc000_1fff).contains(msr) || !vmcs.proc.contains(.useMSRBitmaps) {
            invariant(wantsMSR, "MSR \(msr) outside the bitmaps did not exit")
        }
        // SDM 26.2: the exception bitmap, with #PF inverted on a mismatch.
        let wantsException = ExitRouting.wantsException(vector, errorCode: errorCode, vmcs: vmcs)
        if vector >= 32 { invariant(!wantsException, "vector \(vector) beyond the bitmap") }
        _ = ExitRouting.wantsHLT(vmcs: vmcs)
        let q = ExitRouting.ioQualification(port: port, size: size, input: write, string: false, rep: false)
        invariant(q >> 16 == UInt64(port) && q & 7 == UInt64(size - 1), "I/O qualification \(q)")

        // One decision about what ends L2's run; "run" only when nothing is due.
        let step = L2Schedule.next(pending)
        if step == .run { invariant(!pending.deliveryFault && !pending.l1InterruptPending && !pending.halted, "ran L2 past a due event") }

        // SDM 28: the exit, as L0 reflects it.
        let entryEvent = EntryEvent(vmcs: vmcs, rip: l2.rip)
        let plan = VMTransitions.exit(exit, l2: l2, l1: l1, vmcs: vmcs, entryEvent: entryEvent, halted: halted,
                                      preemptionTimer: pending.preemptionTimer, guestMSRs: [], memory: memory,
                                      maxMSRListEntries: maxMSRListEntries)
        invariant(plan.exit.reason == reason, "recorded exit reason \(plan.exit.reason) for \(reason)")
        invariant(UInt32(truncatingIfNeeded: plan.vmcs.read(.exitReason) ?? 0) & 0xffff == UInt32(reason.rawValue), "EXIT_REASON field")
        invariant(plan.vmcs.read(.guestRIP) == l2.rip, "GUEST_RIP not saved (28.3)")
        invariant(plan.msrStore.entries.count <= maxMSRListEntries && plan.msrLoad.entries.count <= maxMSRListEntries, "MSR lists")
        for field in VMCSField.allFields {
            guard let value = plan.vmcs.read(field) else { continue }
            invariant(value & ~field.width.valueMask == 0, "\(field) holds \(value) after the exit")
        }
    }
}
