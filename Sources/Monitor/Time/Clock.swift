#if canImport(Glibc)
import Glibc
#endif
import KVM

/// The monitor's time, injected so that time-driven paths (the APIC timer,
/// the VMX-preemption timer, trace timestamps) can be driven by a test.
public protocol MonitorClock: AnyObject, Sendable {
    /// Wall time in nanoseconds (CLOCK_MONOTONIC on the host): trace
    /// timestamps, L1's APIC timer and the host timers' deadlines.
    func now() -> UInt64
    /// CPU time of the calling thread in nanoseconds: what a guest ran on
    /// the vCPU thread. The VMX-preemption timer counts this, so L0's own
    /// handling and a loaded host are not L2's time (docs/ARCHITECTURE.md).
    func threadCPUTime() -> UInt64
    /// Waits until `now()` reaches `deadline`, or a stop is requested
    /// (SIGINT, SIGTERM): for time that must pass with no guest running, such
    /// as a VMX-preemption timer counting down in L2's HLT state.
    func sleep(until deadline: UInt64)
}

/// The host's clocks.
public final class HostClock: MonitorClock {
    public init() {}

    @inline(__always)
    public func now() -> UInt64 { Self.read(CLOCK_MONOTONIC) }

    @inline(__always)
    public func threadCPUTime() -> UInt64 { Self.read(CLOCK_THREAD_CPUTIME_ID) }

    public func sleep(until deadline: UInt64) {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        // EINTR: a stop request (its handler sets the flag) or another signal.
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR, StopRequest.signal == nil {}
    }

    @inline(__always)
    static func read(_ id: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(id, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
