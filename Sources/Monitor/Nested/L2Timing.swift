import CKVM
import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// When L2 must leave before it runs again: L1's interrupts, the
/// VMX-preemption timer, and the order of those exits against an event the
/// entry injected (SDM Vol. 3C 26.5.1, 27.6).
extension Machine {
    /// An interrupt of L1's APIC that is due while L2 runs (the timer is
    /// brought up to date first). External-interrupt exiting is always 1
    /// (the capability MSRs require it), so such an interrupt is an exit.
    func pendingL1Interrupt() -> UInt8? {
        if let deadline = apic.timerDeadline, deadline <= monotonicNanos() { apic.updateTimer(at: monotonicNanos()) }
        return apic.deliverableVector
    }

    /// True when L2 must leave before it runs again: its preemption timer
    /// expired, L1 has an interrupt, or L2 is halted. A halted L2 skips idle
    /// time as L1 does: L1's armed APIC timer fires at once.
    func l2ExitIsDue(_ l2: L2Machine) -> Bool {
        if l2.deliveryFault != nil { return true }
        if l2.halted {
            if pendingL1Interrupt() == nil, apic.timerDeadline != nil { apic.fireTimer(at: monotonicNanos()) }
            return true
        }
        let preempted = l2.preemptionDeadline.map { monotonicNanos() >= $0 } ?? false
        guard preempted || pendingL1Interrupt() != nil else { return false }
        return !stopAfterDelivery(l2)
    }

    /// An injected event still waiting for KVM_RUN is delivered before a
    /// due preemption-timer or external-interrupt exit: VM entry delivers
    /// it (SDM 27.6), and the exit comes at the next instruction boundary,
    /// the first instruction of its handler (KVM's nested_run_pending). A
    /// breakpoint on that handler stops L2 there. False when there is no
    /// such event, or its handler has no debug register (no interrupt or
    /// trap gate, or all four in use): then the exit comes first and the
    /// event goes back to L1 as IDT-vectoring information.
    func stopAfterDelivery(_ l2: L2Machine) -> Bool {
        guard let event = DeliveredEvent(l2.vcpu.sync.pointee.events) else {
            l2.deliveryStop = nil
            return false
        }
        let vector = Int(event.vector)
        l2.deliveryStop = vector
        if (try? refreshL2Breakpoints(l2)) != nil, l2.breakpoints.handlers[vector] != nil { return true }
        l2.deliveryStop = nil
        return false
    }

    /// L1's APIC timer runs on while L2 does (and an L2 that L1 gives the
    /// APIC page programs it itself): a host timer kicks L2's vCPU at its
    /// deadline, so that the interrupt exits to L1 in time.
    func kickL2AtL1TimerDeadline(_ l2: L2Machine) throws(KVMError) {
        guard let deadline = apic.timerDeadline else {
            l2.l1TimerKick?.disarm()
            return
        }
        if l2.l1TimerKick == nil { l2.l1TimerKick = HostTimer(kicker: try l2.vcpu.makeKicker()) }
        l2.l1TimerKick?.arm(deadline: deadline, now: monotonicNanos())
    }

    /// Starts the VMX-preemption timer (SDM 26.5.1): it counts down at the
    /// TSC rate shifted right by IA32_VMX_MISC[4:0]; a host timer kicks L2's
    /// vCPU at the deadline and L0 then reflects exit reason 52.
    func armPreemptionTimer(_ l2: L2Machine, vmcs: VMCS12) throws(KVMError) {
        guard vmcs.pin.contains(.activatePreemptionTimer) else {
            l2.preemptionDeadline = nil
            l2.preemptionTimer?.disarm()
            return
        }
        if l2.preemptionTickNanos == 0 {
            let rate = vmx.capabilities.misc & 0x1f
            l2.preemptionTickNanos = Double(UInt64(1) << rate) * 1_000_000 / Double(try l2.vcpu.tscKHz())
        }
        if l2.preemptionTimer == nil { l2.preemptionTimer = HostTimer(kicker: try l2.vcpu.makeKicker()) }
        let ticks = Double(vmcs.read(.guestVMXPreemptionTimerValue) ?? 0)
        let now = monotonicNanos()
        let deadline = now &+ UInt64(min(ticks * l2.preemptionTickNanos, Double(UInt64.max >> 1)))
        l2.preemptionDeadline = deadline
        l2.preemptionTimer?.arm(deadline: deadline, now: now)
    }

    /// Stops the timer as L2 leaves VMX non-root operation, saving what is
    /// left when "save VMX-preemption-timer value" asks for it (SDM 28.3).
    func stopPreemptionTimer(_ l2: L2Machine, into vmcs: inout VMCS12) {
        guard let deadline = l2.preemptionDeadline else { return }
        l2.preemptionDeadline = nil
        l2.preemptionTimer?.disarm()
        if vmcs.exitControls.contains(.savePreemptionTimer), l2.preemptionTickNanos > 0 {
            let now = monotonicNanos()
            let left = deadline > now ? Double(deadline - now) / l2.preemptionTickNanos : 0
            vmcs.write(.guestVMXPreemptionTimerValue, UInt64(left))
        }
    }
}
