import VMXArch

/// The VMX-preemption timer of one VM entry (SDM Vol. 3C 26.5.1, 27.7.4):
/// it counts down only while L2 is in VMX non-root operation, at the TSC
/// rate shifted right by IA32_VMX_MISC[4:0]. L0 counts in nanoseconds of
/// L2's own run time, which the monitor measures around each run of L2; the
/// time L0 spends handling an exit is not L2's and is never charged.
public struct PreemptionTimer: Equatable, Sendable {
    /// What is left, in nanoseconds of L2 run time.
    public private(set) var remainingNanos: UInt64
    /// One timer tick: 2^rate TSC cycles, in nanoseconds.
    public let tickNanos: Double

    /// Starts the timer with the VMX-preemption timer-value field (a 32-bit
    /// field, SDM 25.4.2). `tickNanos` must be positive; a tick shorter than
    /// that is taken as 1 ns.
    public init(ticks: UInt32, tickNanos: Double) {
        self.tickNanos = tickNanos > 0 ? tickNanos : 1
        let nanos = Double(ticks) * self.tickNanos
        remainingNanos = nanos < Double(UInt64.max >> 1) ? UInt64(nanos) : UInt64.max >> 1
    }

    /// A timer that started at zero expires before L2's first instruction,
    /// after any event injection (SDM 27.7.4).
    public var expired: Bool { remainingNanos == 0 }

    /// Charges `nanos` of L2 run time; returns what it took, at most what was left.
    @discardableResult
    public mutating func charge(_ nanos: UInt64) -> UInt64 {
        let taken = min(nanos, remainingNanos)
        remainingNanos -= taken
        return taken
    }

    /// Gives back `nanos` (what `charge` took) for a run that was L0's work rather than
    /// L2's: the run that stopped at a patched site, and the step over its
    /// original instruction (docs/PATCHING.md). Without it a short timer
    /// could expire at every attempt, and L2 would never get past the site.
    public mutating func refund(_ nanos: UInt64) {
        remainingNanos = min(remainingNanos &+ nanos < remainingNanos ? .max : remainingNanos + nanos, UInt64.max >> 1)
    }

    /// The value "save VMX-preemption-timer value" stores at VM exit (SDM
    /// 28.3.4): whole ticks left, rounded up so that a timer that has not
    /// expired never reads 0.
    public var remainingTicks: UInt32 {
        guard remainingNanos > 0 else { return 0 }
        let ticks = (Double(remainingNanos) / tickNanos).rounded(.up)
        return ticks >= Double(UInt32.max) ? .max : UInt32(ticks)
    }
}

/// What L0 knows, between two runs of L2, about the events that may end
/// L2's run. Filled by the monitor; read only by `L2Schedule.next`.
public struct L2Pending: Equatable, Sendable {
    /// Delivering the event the entry injected meets an EPT violation or
    /// misconfiguration at its IDT gate (SDM 28.2.4).
    public var deliveryFault = false
    /// The event the entry injected has not been delivered yet.
    public var injectedEventWaiting = false
    /// L0 can stop L2 at the first instruction of that event's handler.
    public var canStopAfterDelivery = false
    /// The VMX-preemption timer, when the entry activated it.
    public var preemptionTimer: PreemptionTimer?
    /// L1's APIC has an interrupt to deliver: with external-interrupt
    /// exiting that is an exit, else L2's IDT takes it (SDM 26.2).
    public var l1InterruptPending = false
    /// The pin-based control "external-interrupt exiting" (25.6.1).
    public var externalInterruptExiting = true
    /// L2 can take an external interrupt now: RFLAGS.IF set, no blocking by
    /// STI or MOV SS, no event in delivery (Vol. 3A 6.8.1, Vol. 3C 25.4.2).
    public var l2Interruptible = false
    /// L2 is in the HLT activity state (SDM 25.4.2).
    public var halted = false
    /// Nanoseconds until L1's APIC timer fires, when it is armed.
    public var l1TimerDue: UInt64?
    /// The #DB the entry left pending (SDM 27.7.3), as pending-debug-exception
    /// bits; 0 for none.
    public var debugExceptions: UInt64 = 0
    /// An MTF VM exit is pending (SDM 26.5.2): L2 completed an instruction,
    /// or the delivery of an event, under "monitor trap flag".
    public var monitorTrap = false

    public init(deliveryFault: Bool = false, injectedEventWaiting: Bool = false, canStopAfterDelivery: Bool = false,
                preemptionTimer: PreemptionTimer? = nil, l1InterruptPending: Bool = false, halted: Bool = false,
                l1TimerDue: UInt64? = nil) {
        self.deliveryFault = deliveryFault; self.injectedEventWaiting = injectedEventWaiting
        self.canStopAfterDelivery = canStopAfterDelivery; self.preemptionTimer = preemptionTimer
        self.l1InterruptPending = l1InterruptPending; self.halted = halted; self.l1TimerDue = l1TimerDue
    }
}

/// What L0 does next with L2.
public enum L2Step: Equatable, Sendable {
    /// Nothing is due: run L2.
    case run
    /// An exit is due, but the injected event comes first (SDM 27.6: VM entry
    /// delivers it; the exit comes at the next instruction boundary, the
    /// first instruction of its handler): run L2 to that handler.
    case runToHandler
    /// Reflect the EPT violation or misconfiguration of the injected event's
    /// delivery, as an exit during delivery (SDM 28.2.4).
    case exitDuringDelivery
    /// The #DB the entry left pending is recognised before L2's first
    /// instruction: an exception exit when L1 intercepts #DB, else delivered
    /// through L2's IDT.
    case debugException
    /// Reflect exit reason 37, the monitor trap flag.
    case monitorTrap
    /// Reflect exit reason 52.
    case preemptionTimerExpired
    /// Reflect exit reason 1.
    case externalInterrupt
    /// External-interrupt exiting is 0: L1's interrupt is delivered through
    /// L2's IDT, and acknowledged in L1's APIC (SDM 26.2).
    case interruptL2
    /// L2 is halted and L1's APIC timer is the next event: skip the idle time
    /// by firing it now (as L0 does for a halted L1).
    case fireL1Timer
    /// L2 is halted and nothing can ever wake it.
    case deadHalt
}

/// One decision for "which L2 exit comes next", in the SDM's priority order
/// (Vol. 3A Table 6-2 with Vol. 3C 26.5.1, 26.7.2 and 27.7.3-27.7.4): event
/// injection first, then a pending MTF VM exit (which takes priority over
/// debug traps and all lower events), then a pending debug exception (a
/// trap on the entry), then the VMX-preemption timer, then external
/// interrupts. It is
/// asked before each run of L2 and when a run returns without an exit of its
/// own (a kick).
public enum L2Schedule {
    public static func next(_ p: L2Pending) -> L2Step {
        if p.deliveryFault { return .exitDuringDelivery }
        // 26.7.2: the MTF VM exit of an entry that injects an event comes
        // on the boundary after its delivery.
        if p.monitorTrap { return p.injectedEventWaiting && p.canStopAfterDelivery ? .runToHandler : .monitorTrap }
        if p.debugExceptions != 0 { return .debugException }
        let timerExpired = p.preemptionTimer?.expired ?? false
        let interruptExit = p.l1InterruptPending && p.externalInterruptExiting
        if (timerExpired || interruptExit) && p.injectedEventWaiting && p.canStopAfterDelivery {
            return .runToHandler
        }
        // Without a stop after delivery the exit comes first, and the event
        // goes back to L1 as IDT-vectoring information.
        if timerExpired { return .preemptionTimerExpired }
        if interruptExit { return .externalInterrupt }
        // An interrupt for L2's IDT waits until L2 can take it; it wakes L2
        // from the HLT activity state.
        if p.l1InterruptPending && p.l2Interruptible { return .interruptL2 }
        guard p.halted else { return .run }
        // The timer counts down in the HLT activity state too: whichever of
        // it and L1's APIC timer comes first ends the halt. An interrupt L2
        // has blocked cannot end it, so another one from the timer cannot.
        let timerDue = p.l1InterruptPending ? nil : p.l1TimerDue
        if let timer = p.preemptionTimer, timerDue.map({ timer.remainingNanos <= $0 }) ?? true {
            return .preemptionTimerExpired
        }
        return timerDue == nil ? .deadHalt : .fireL1Timer
    }
}
