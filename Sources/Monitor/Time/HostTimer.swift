import Dispatch
import KVM

/// Wakes the vCPU when a guest timer expires while the guest runs without
/// exiting: a host timer kicks the vCPU out of KVM_RUN, and the run loop then
/// finds the expired deadline. Used only on the vCPU thread, apart from the
/// timer's own handler, which touches nothing but the kicker.
final class HostTimer {
    private let queue = DispatchQueue(label: "terrapin.host-timer")
    private let source: DispatchSourceTimer
    private var armedDeadline: UInt64?

    init(kicker: any Kicker) {
        source = DispatchSource.makeTimerSource(queue: queue)
        source.setEventHandler { kicker.kick() }
        source.schedule(deadline: .distantFuture)
        source.resume()
    }

    /// Cancels the timer and waits for a handler already running on its
    /// queue, so no kick can touch a vCPU's `kvm_run` after its owner frees it.
    deinit {
        source.cancel()
        queue.sync {}
    }

    /// Arms for `deadline` (monotonic ns) unless already armed for it.
    func arm(deadline: UInt64, now: UInt64) {
        guard armedDeadline != deadline else { return }
        armedDeadline = deadline
        let delta = deadline > now ? deadline - now : 0
        source.schedule(deadline: .now() + .nanoseconds(Int(min(delta, UInt64(Int.max)))), leeway: .microseconds(20))
    }

    func disarm() {
        guard armedDeadline != nil else { return }
        armedDeadline = nil
        source.schedule(deadline: .distantFuture)
    }
}
