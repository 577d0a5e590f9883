import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// When L2 must leave before it runs again: L1's interrupts, the
/// VMX-preemption timer, and the order of those exits against an event the
/// entry injected. The decision itself is `L2Schedule.next` (NestedVMX);
/// this file gathers its inputs and carries out what it decides.
extension Machine {
    /// An interrupt of L1's APIC that is due while L2 runs (the timer is
    /// brought up to date first): an exit with external-interrupt exiting,
    /// else L2's IDT takes it.
    func pendingL1Interrupt() -> UInt8? {
        if let deadline = apic.timerDeadline {
            let now = clock.now()
            if deadline <= now { apic.updateTimer(at: now) }
        }
        return apic.deliverableVector
    }

    /// What is pending for L2 now. When an exit is due while the entry's
    /// injected event still waits for KVM_RUN, L0 arms a breakpoint on that
    /// event's handler, so that L2 can be stopped just after the delivery.
    func l2Pending(_ l2: L2Machine) -> L2Pending {
        // The step over a patched site's original instruction finishes first:
        // with the trap before it, it is one L2 instruction (docs/PATCHING.md).
        if l2.originalStep != nil { return L2Pending() }
        var p = L2Pending(deliveryFault: l2.deliveryFault != nil, preemptionTimer: l2.preemption,
                          l1InterruptPending: pendingL1Interrupt() != nil, halted: l2.halted)
        p.debugExceptions = l2.debugExceptions
        p.monitorTrap = l2.monitorTrap
        p.externalInterruptExiting = vmx.current?.pin.contains(.externalInterruptExiting) ?? true
        if p.l1InterruptPending && !p.externalInterruptExiting { p.l2Interruptible = l2State.acceptsExternalInterrupt }
        // KVM reports when a blocked L2 opens its interrupt window.
        let window = p.l1InterruptPending && !p.externalInterruptExiting && !p.l2Interruptible
        if l2.vcpu.requestInterruptWindow != window { l2.vcpu.requestInterruptWindow = window }
        if let deadline = apic.timerDeadline {
            let now = clock.now()
            p.l1TimerDue = deadline > now ? deadline - now : 0
        }
        let waiting = DeliveredEvent(l2.vcpu.events)
        p.injectedEventWaiting = waiting != nil
        if let event = waiting, p.monitorTrap || p.l1InterruptPending || (p.preemptionTimer?.expired ?? false) {
            p.canStopAfterDelivery = prepareStopAfterDelivery(l2, vector: Int(event.vector))
        } else if waiting == nil {
            l2.deliveryStop = nil
        }
        return p
    }

    /// The next step for L2, from one decision (`L2Schedule.next`).
    func nextL2Step(_ l2: L2Machine) -> L2Step { L2Schedule.next(l2Pending(l2)) }

    /// Arms a breakpoint on the handler of the injected event's `vector`
    /// (KVM's nested_run_pending, SDM 27.6). False when its handler can have
    /// no debug register (no interrupt or trap gate, or all four in use):
    /// then the exit comes first and the event goes back to L1 as
    /// IDT-vectoring information.
    func prepareStopAfterDelivery(_ l2: L2Machine, vector: Int) -> Bool {
        l2.deliveryStop = vector
        if (try? refreshL2Breakpoints(l2)) != nil, l2.breakpoints.breakpoints.handler(of: vector) != nil { return true }
        l2.deliveryStop = nil
        return false
    }

    /// Carries out a step that ends L2's run: an exit to L1, or the end of
    /// the run. `.run` and `.runToHandler` do nothing here: L2 runs next.
    func takeL2Step(_ step: L2Step, l2: L2Machine, vmcs: VMCS12, note: inout ExitNote) -> RunOutcome? {
        switch step {
        case .run, .runToHandler:
            return nil
        case .exitDuringDelivery:
            guard let fault = l2.deliveryFault else { return nil }
            // The injected event's gate is not in EPT12: the exit happens
            // during its delivery, so reflect records it as IDT-vectoring.
            l2.deliveryFault = nil
            note.kind = .mmioRead
            note.address = fault.guestPhysical
            return reflect(fault, state: l2State, note: &note)
        case .monitorTrap:
            // 26.5.2: exit 37, qualification 0, L2 at the next instruction.
            completePending(l2)
            return reflect(NestedExit(reason: .monitorTrapFlag), state: l2State, note: &note)
        case .debugException:
            // 27.7.3: the entry's pending #DB, before L2's first instruction.
            let pending = l2.debugExceptions
            l2.debugExceptions = 0
            return raiseDebugException(pending, l2: l2, vmcs: vmcs, note: &note)
        case .preemptionTimerExpired:
            // The timer counts down in the HLT activity state too (SDM 26.5.1):
            // a halted L2's exit comes once that time has passed, so L1's TSC
            // has advanced by the timer's value. Nothing is left of it then.
            if var timer = l2.preemption {
                if l2.halted && timer.remainingNanos > 0 { clock.sleep(until: clock.now() &+ timer.remainingNanos) }
                timer.charge(timer.remainingNanos)
                l2.preemption = timer
            }
            completePending(l2)
            return reflect(NestedExit(reason: .preemptionTimerExpired), state: l2State, note: &note)
        case .externalInterrupt:
            guard let vector = pendingL1Interrupt() else { return nil }
            // SDM 25.7.1 "acknowledge interrupt on exit": the vector goes into
            // the exit interruption information and the APIC marks it in service.
            completePending(l2)
            var exit = NestedExit(reason: .externalInterrupt)
            if vmcs.exitControls.contains(.acknowledgeInterruptOnExit) {
                apic.acknowledge(vector)
                exit.interruptionInfo = DeliveredEvent(kind: .externalInterrupt, vector: vector).interruptionInformation
            }
            note.value = UInt64(vector)
            return reflect(exit, state: l2State, note: &note)
        case .interruptL2:
            // SDM 26.2: with external-interrupt exiting 0 the interrupt is
            // delivered through L2's IDT; L1's APIC marks it in service.
            guard let vector = pendingL1Interrupt() else { return nil }
            do { try l2.vcpu.injectInterrupt(vector) } catch { return .unhandledExit("injecting into L2: \(error)") }
            apic.acknowledge(vector)
            l2.halted = false
            note.kind = .interruptInjected
            note.value = UInt64(vector)
            return nil
        case .fireL1Timer:
            apic.fireTimer(at: clock.now())
            let next = nextL2Step(l2)
            if next == .externalInterrupt || next == .interruptL2 { return takeL2Step(next, l2: l2, vmcs: vmcs, note: &note) }
            return .deadHalt(reason: "L2 halted (HLT activity state) and L1's timer interrupt cannot be delivered")
        case .deadHalt:
            return .deadHalt(reason: "L2 halted (HLT activity state) and nothing can wake it: L1 has no interrupt or timer")
        }
    }

    /// A trap-like #DB arising in L2 with `pending` (B0-B3, BS): an exception
    /// exit with those bits when L1 intercepts #DB, DR6 untouched (28.2.1);
    /// else L2's IDT takes it, with DR6 updated.
    func raiseDebugException(_ pending: UInt64, l2: L2Machine, vmcs: VMCS12, note: inout ExitNote) -> RunOutcome? {
        note.value = 1
        if ExitRouting.wantsException(1, errorCode: nil, vmcs: vmcs) {
            let info = DeliveredEvent(kind: .hardwareException, vector: 1).interruptionInformation
            return reflect(NestedExit(reason: .exceptionOrNMI, qualification: DebugExceptions.exitQualification(dr6: pending),
                                      interruptionInfo: info), state: l2State, note: &note)
        }
        do { try injectDebugTrap(pending, into: l2.vcpu) } catch { return .unhandledExit("L2's #DB: \(error)") }
        l2.halted = false
        return nil
    }

    /// Starts the VMX-preemption timer at VM entry (SDM 27.7.4) with the
    /// timer-value field. It counts L2's run time only (`runL2`).
    func armPreemptionTimer(_ l2: L2Machine, ticks: UInt32?) throws(KVMError) {
        guard let ticks else {
            l2.preemption = nil
            return
        }
        if l2.preemptionTickNanos == 0 {
            // 2^rate TSC cycles a tick, IA32_VMX_MISC[4:0] (SDM A.6).
            let rate = vmx.capabilities.misc & 0x1f
            l2.preemptionTickNanos = Double(UInt64(1) << rate) * 1_000_000 / Double(try l2.vcpu.tscKHz())
        }
        l2.preemption = PreemptionTimer(ticks: ticks, tickNanos: l2.preemptionTickNanos)
    }

    /// One KVM_RUN of L2. L1's APIC timer runs on while L2 does (and an L2
    /// that L1 gives the APIC page programs it itself), so L2's host timer
    /// kicks it at that deadline or at the preemption timer's, whichever
    /// comes first. With the VMX-preemption timer active, the CPU time the
    /// run took is charged to it (SDM 26.5.1: it counts down in VMX non-root
    /// operation only); its wall-clock deadline assumes L2 has the CPU to itself.
    func runL2(_ l2: L2Machine) throws(KVMError) -> VCPUExit {
        let start = l2.preemption == nil ? 0 : clock.threadCPUTime()
        let now = clock.now()
        let stepping = l2.originalStep != nil                    // one instruction: no kick
        var deadline = stepping ? nil : apic.timerDeadline
        if let timer = l2.preemption, !stepping {
            let expiry = now &+ timer.remainingNanos
            deadline = deadline.map { min($0, expiry) } ?? expiry
        }
        if let deadline {
            if l2.kick == nil { l2.kick = HostTimer(kicker: try l2.vcpu.makeKicker()) }
            l2.kick?.arm(deadline: deadline, now: now)
        } else {
            l2.kick?.disarm()
        }
        let exit = try l2.vcpu.runOnce()
        if l2.preemption != nil { l2.lastRunNanos = l2.preemption?.charge(clock.threadCPUTime() &- start) ?? 0 }
        return exit
    }
}
