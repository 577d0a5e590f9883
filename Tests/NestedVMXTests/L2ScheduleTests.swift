import NestedVMX
import XCTest

/// "Which L2 exit comes next" (SDM Vol. 3A Table 6-2, Vol. 3C 26.5.1,
/// 27.6, 27.7.4, 28.2.4) and the VMX-preemption timer's accounting of L2's
/// run time. Time is a plain number here: nothing reads a clock.
final class L2ScheduleTests: XCTestCase {
    /// 1000 ticks of 10 ns.
    func timer(ticks: UInt32 = 1000, ranNanos: UInt64 = 0) -> PreemptionTimer {
        var t = PreemptionTimer(ticks: ticks, tickNanos: 10)
        t.charge(ranNanos)
        return t
    }

    func testNothingDueRunsL2() {
        XCTAssertEqual(L2Schedule.next(L2Pending()), .run)
        XCTAssertEqual(L2Schedule.next(L2Pending(preemptionTimer: timer())), .run)
        XCTAssertEqual(L2Schedule.next(L2Pending(injectedEventWaiting: true, canStopAfterDelivery: true)), .run)
    }

    func testAFaultDeliveringTheInjectedEventComesFirst() {
        let all = L2Pending(deliveryFault: true, injectedEventWaiting: true, canStopAfterDelivery: true,
                            preemptionTimer: timer(ranNanos: 10_000), l1InterruptPending: true, halted: true)
        XCTAssertEqual(L2Schedule.next(all), .exitDuringDelivery)
    }

    func testThePreemptionTimerComesBeforeAnExternalInterrupt() {
        let both = L2Pending(preemptionTimer: timer(ranNanos: 10_000), l1InterruptPending: true)
        XCTAssertEqual(L2Schedule.next(both), .preemptionTimerExpired)
        XCTAssertEqual(L2Schedule.next(L2Pending(preemptionTimer: timer(), l1InterruptPending: true)), .externalInterrupt)
    }

    /// 27.7.3 with 27.7.4: the #DB an entry leaves pending is recognised
    /// before L2's first instruction, so before a zero timer's exit and an
    /// interrupt; a fault delivering an injected event still comes first.
    func testAPendingDebugExceptionComesBeforeTheTimerAndInterrupts() {
        var p = L2Pending(preemptionTimer: timer(ticks: 0), l1InterruptPending: true, halted: true)
        p.debugExceptions = 1 << 14
        XCTAssertEqual(L2Schedule.next(p), .debugException)
        p.deliveryFault = true
        XCTAssertEqual(L2Schedule.next(p), .exitDuringDelivery)
    }

    /// 26.7.2: a pending MTF VM exit comes before debug traps, the timer and
    /// interrupts; at an entry that injects an event, after its delivery
    /// (or first, with the event back to L1, when L0 cannot stop there).
    func testAMonitorTrapComesBeforeDebugTrapsTimerAndInterrupts() {
        var p = L2Pending(preemptionTimer: timer(ticks: 0), l1InterruptPending: true)
        p.debugExceptions = 1 << 14
        p.monitorTrap = true
        XCTAssertEqual(L2Schedule.next(p), .monitorTrap)
        p.injectedEventWaiting = true
        XCTAssertEqual(L2Schedule.next(p), .monitorTrap, "no stop after the delivery")
        p.canStopAfterDelivery = true
        XCTAssertEqual(L2Schedule.next(p), .runToHandler)
        p.deliveryFault = true
        XCTAssertEqual(L2Schedule.next(p), .exitDuringDelivery)
        p = L2Pending()
        XCTAssertEqual(L2Schedule.next(p), .run)
    }

    /// SDM 26.2: with external-interrupt exiting 0, L1's interrupt is no
    /// exit. It goes into L2 once L2 can take it, waking a halted L2; one L2
    /// blocks neither exits nor stops the preemption timer, and a halted L2
    /// that blocks it waits for the timer alone.
    func testWithoutInterruptExitingTheInterruptWaitsForL2() {
        var p = L2Pending(l1InterruptPending: true)
        p.externalInterruptExiting = false
        XCTAssertEqual(L2Schedule.next(p), .run, "blocked: L2 runs on")
        p.l2Interruptible = true
        XCTAssertEqual(L2Schedule.next(p), .interruptL2)
        p.halted = true
        XCTAssertEqual(L2Schedule.next(p), .interruptL2, "it wakes a halted L2")
        p.l2Interruptible = false
        p.l1TimerDue = 100
        XCTAssertEqual(L2Schedule.next(p), .deadHalt, "blocked in HLT: L1's timer cannot wake it")
        p.preemptionTimer = timer()
        XCTAssertEqual(L2Schedule.next(p), .preemptionTimerExpired, "the preemption timer still ends the halt")
        p.preemptionTimer = timer(ticks: 0)
        p.halted = false
        p.l2Interruptible = true
        XCTAssertEqual(L2Schedule.next(p), .preemptionTimerExpired, "the timer's exit comes first")
        // An injected event waiting is no reason to stop at its handler.
        p.preemptionTimer = nil
        p.injectedEventWaiting = true
        p.canStopAfterDelivery = true
        p.l2Interruptible = false
        XCTAssertEqual(L2Schedule.next(p), .run)
    }

    func testAnExitDueAtAnInjectingEntryWaitsForTheDelivery() {
        // 27.6: the entry delivers the event; the exit comes at the handler.
        var p = L2Pending(injectedEventWaiting: true, canStopAfterDelivery: true, l1InterruptPending: true)
        XCTAssertEqual(L2Schedule.next(p), .runToHandler)
        p.l1InterruptPending = false
        p.preemptionTimer = timer(ticks: 0)          // zero at entry: expires after the injection (27.7.4)
        XCTAssertEqual(L2Schedule.next(p), .runToHandler)
        // Without a breakpoint for the handler, the exit comes first and the
        // event goes back to L1 as IDT-vectoring information.
        p.canStopAfterDelivery = false
        XCTAssertEqual(L2Schedule.next(p), .preemptionTimerExpired)
        // Once delivered, the exit is due.
        p.canStopAfterDelivery = true
        p.injectedEventWaiting = false
        XCTAssertEqual(L2Schedule.next(p), .preemptionTimerExpired)
    }

    func testAHaltedL2WakesAtTheEarlierOfItsTimerAndL1sTimer() {
        XCTAssertEqual(L2Schedule.next(L2Pending(halted: true)), .deadHalt)
        XCTAssertEqual(L2Schedule.next(L2Pending(halted: true, l1TimerDue: 5)), .fireL1Timer)
        // 10 µs of timer left against L1's timer in 5 µs, then in 20 µs.
        XCTAssertEqual(L2Schedule.next(L2Pending(preemptionTimer: timer(), halted: true, l1TimerDue: 5_000)), .fireL1Timer)
        XCTAssertEqual(L2Schedule.next(L2Pending(preemptionTimer: timer(), halted: true, l1TimerDue: 20_000)),
                       .preemptionTimerExpired)
        XCTAssertEqual(L2Schedule.next(L2Pending(preemptionTimer: timer(), halted: true)), .preemptionTimerExpired)
        // An interrupt already pending wakes it at once.
        XCTAssertEqual(L2Schedule.next(L2Pending(preemptionTimer: timer(), l1InterruptPending: true, halted: true)),
                       .externalInterrupt)
    }

    /// L0's handling time is never charged: only what the monitor measured
    /// of L2's runs. A loaded host that stretches L0's handling (the old
    /// wall-clock timer) can no longer turn an interrupt exit into reason 52.
    func testOnlyL2sRunTimeIsCharged() {
        var t = timer()                               // 10 µs
        XCTAssertEqual(t.remainingNanos, 10_000)
        XCTAssertEqual(t.remainingTicks, 1000)
        t.charge(2_500)                              // one run of L2
        XCTAssertFalse(t.expired)
        XCTAssertEqual(t.remainingTicks, 750)
        t.charge(1)
        XCTAssertEqual(t.remainingTicks, 750, "a partial tick left still reads as one")
        t.charge(7_499)
        XCTAssertTrue(t.expired)
        XCTAssertEqual(t.remainingTicks, 0)
        t.charge(.max)
        XCTAssertEqual(t.remainingNanos, 0, "charging past zero stops at zero")
    }

    func testTimerLimitsAreDefined() {
        XCTAssertTrue(PreemptionTimer(ticks: 0, tickNanos: 10).expired)
        let longest = PreemptionTimer(ticks: .max, tickNanos: 1e12)
        XCTAssertFalse(longest.expired)
        XCTAssertEqual(longest.remainingNanos, UInt64.max >> 1, "capped, not trapped")
        XCTAssertEqual(longest.remainingTicks, 9_223_373)
        // A bad tick length is taken as 1 ns, never a division by zero.
        XCTAssertEqual(PreemptionTimer(ticks: 5, tickNanos: 0).remainingTicks, 5)
        XCTAssertEqual(PreemptionTimer(ticks: 5, tickNanos: -.infinity).remainingNanos, 5)
        XCTAssertEqual(PreemptionTimer(ticks: 5, tickNanos: .nan).remainingNanos, 5)
    }

    /// L0's own work at a patched site is given back to the timer, even
    /// when it used the timer up (docs/PATCHING.md).
    func testARefundGivesBackL0sWork() {
        var t = timer(ticks: 10)                                              // 100 ns
        XCTAssertEqual(t.charge(150), 100, "no more than was left")
        XCTAssertTrue(t.expired)
        t.refund(100)
        XCTAssertEqual(t.remainingNanos, 100)
        XCTAssertFalse(t.expired)
        t.refund(.max)
        XCTAssertEqual(t.remainingNanos, UInt64.max >> 1, "capped")
    }
}
