import VMXArch

/// A trace lined up with the host's `kvm:*` events of the same run
/// (Traces/README.md, "Lining up with host traces").
///
/// The host events of vCPU 0's thread are taken in order. A `kvm_exit`
/// followed by `kvm_userspace_exit` reached L0 (it is one of the trace's
/// records); one followed by `kvm_entry` was handled inside the kernel, and
/// becomes a `kernel-exit` record with handler `kernel`: its time is the
/// kvm_exit's less the trace's CLOCK_MONOTONIC base, its duration the time
/// to the kvm_entry. A host trace without `kvm_exit` events (the kvm_pvm
/// backend emits none) is read by its operation events instead: an operation
/// (`kvm_cpuid`, ...) followed by `kvm_userspace_exit` went to L0, any other
/// was handled in the kernel, with duration 0 (nothing marks its end).
/// Either way the record's level is that of the next record L0 saw (the level
/// that was running), and its episode the one around it when the records
/// before and after it share one. Its VMX reason is the reason's code when
/// the name is a VMX one (Intel hosts print `CPUID`, `EPT_VIOLATION`);
/// other names (AMD's `npf`, `cpuid`) have none and their `address` is the
/// name's position + 1 in the `kernel_exit_reasons` metadata.
public struct HostAlignment: Sendable {
    public struct ReasonCount: Sendable, Equatable {
        public var reason: String
        public var count: Int
        public var totalNanos: UInt64
    }

    /// CLOCK_MONOTONIC ns of the trace's time zero, and vCPU 0's thread.
    public var base: UInt64
    public var tid: UInt32
    /// Events of other threads, left out.
    public var otherThreadEvents = 0
    /// kvm_exit events of the vCPU thread, within the run and outside it.
    public var exits = 0
    public var outsideRun = 0
    /// Of those within the run: to userspace (L0), handled in the kernel,
    /// and without a following entry or userspace exit (the host trace ended).
    public var toUserspace = 0
    public var kernelHandled = 0
    public var unmatched = 0
    /// Exits (not events) of the trace in the span of the host events used.
    public var traceExitsInSpan = 0
    /// The kernel-handled exits as records, in time order.
    public var records: [TraceRecord] = []
    /// Names of non-VMX reasons, by `address` - 1.
    public var otherReasons: [String] = []
    public var byReason: [ReasonCount] = []

    public init(trace reader: TraceReader, host: HostTrace, base: UInt64, tid: UInt32) {
        self.base = base
        self.tid = tid
        // vCPU 0's records by time: the level that ran up to each, and its episode.
        var mine: [(time: UInt64, level: UInt8, episode: UInt64, exit: Bool)] = []
        reader.forEach { r in
            if r.vcpu == 0 { mine.append((r.timestamp, r.level, r.episode, !r.kind.isEvent)) }
        }
        mine.sort { $0.time < $1.time }   // stable: file order among equal times
        func firstAtOrAfter(_ t: UInt64) -> Int {
            var lo = 0, hi = mine.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if mine[mid].time < t { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
        let vmxCodes = Dictionary(VMXExitReason.allKnown.map { ($0.name, UInt32($0.rawValue)) }, uniquingKeysWith: { a, _ in a })
        var other: [String: Int] = [:]
        var counts: [String: (Int, UInt64)] = [:]
        var order: [String] = []
        let events = host.events.filter { $0.tid == tid }
        otherThreadEvents = host.events.count - events.count
        var first = UInt64.max, last: UInt64 = 0
        func addKernel(_ e: HostTrace.Event, _ t: UInt64, duration: UInt64) {
            kernelHandled += 1
            let j = firstAtOrAfter(t)
            let level = j < mine.count ? mine[j].level : (mine.last?.level ?? 1)
            let episode = j > 0 && j < mine.count && mine[j - 1].episode == mine[j].episode ? mine[j].episode : 0
            var r = TraceRecord(timestamp: t, duration: TraceRecord.clampDuration(duration), level: level, kind: .kernelExit,
                                rip: e.rip, episode: episode, handler: .kernel)
            if let code = vmxCodes[e.reason] {
                r.vmxReason = code
            } else {
                let k = other[e.reason] ?? { other[e.reason] = otherReasons.count; otherReasons.append(e.reason); return otherReasons.count - 1 }()
                r.address = UInt64(k + 1)
            }
            records.append(r)
            if counts[e.reason] == nil { order.append(e.reason) }
            counts[e.reason, default: (0, 0)].0 += 1
            counts[e.reason, default: (0, 0)].1 += duration
        }
        func note(_ t: UInt64) {
            first = min(first, t)
            last = max(last, t)
        }
        if events.contains(where: { $0.kind == .exit }) {
            for (i, e) in events.enumerated() where e.kind == .exit {
                exits += 1
                guard e.time >= base else { outsideRun += 1; continue }
                let t = e.time - base
                guard let next = events[(i + 1)...].first(where: { $0.kind != .exit && $0.kind != .operation }) else {
                    unmatched += 1
                    continue
                }
                note(t)
                if next.kind == .userspaceExit {
                    toUserspace += 1
                } else {
                    addKernel(e, t, duration: next.time >= e.time ? next.time - e.time : 0)
                }
            }
        } else {
            // Operations only: a userspace exit goes with the operation just
            // before it (OUT, MMIO stores, filtered MSRs: KVM traces them and
            // exits), or else with the next one (IN and MMIO loads, traced
            // when the next KVM_RUN completes them). Unpaired operations
            // were handled in the kernel.
            var pending: HostTrace.Event?
            var dangling = false
            func take(_ e: HostTrace.Event, userspace: Bool) {
                exits += 1
                guard e.time >= base else { outsideRun += 1; return }
                let t = e.time - base
                note(t)
                if userspace { toUserspace += 1 } else { addKernel(e, t, duration: 0) }
            }
            for e in events {
                switch e.kind {
                case .operation:
                    if dangling {
                        take(e, userspace: true)
                        dangling = false
                    } else {
                        if let p = pending { take(p, userspace: false) }
                        pending = e
                    }
                case .userspaceExit:
                    if let p = pending {
                        take(p, userspace: true)
                        pending = nil
                    } else {
                        dangling = true
                    }
                default: break
                }
            }
            if let p = pending { take(p, userspace: false) }
        }
        if first <= last {
            let lo = firstAtOrAfter(first), hi = firstAtOrAfter(last + 1)
            traceExitsInSpan = mine[lo..<hi].reduce(0) { $0 + ($1.exit ? 1 : 0) }
        }
        records.sort { $0.timestamp < $1.timestamp }
        byReason = order.map { ReasonCount(reason: $0, count: counts[$0]!.0, totalNanos: counts[$0]!.1) }
            .sorted { ($0.count, $1.reason) > ($1.count, $0.reason) }
    }

    /// Writes `reader`'s records with the kernel-handled exits merged in by
    /// time (each before the first record that is later), and its metadata
    /// with `aligned_host_trace` and `kernel_exit_reasons` added.
    public func writeMerged(_ reader: TraceReader, hostPath: String, to path: String) throws(TraceError) {
        var metadata = reader.metadata
        metadata["aligned_host_trace"] = hostPath
        metadata["kernel_exit_reasons"] = otherReasons.enumerated().map { "\($0.offset + 1)=\($0.element)" }.joined(separator: ",")
        let w = try TraceWriter(path: path, metadata: metadata)
        var k = 0
        reader.forEach { r in
            while k < records.count && records[k].timestamp < r.timestamp {
                w.append(records[k])
                k += 1
            }
            w.append(r)
        }
        while k < records.count {
            w.append(records[k])
            k += 1
        }
        try w.finish()
    }
}
