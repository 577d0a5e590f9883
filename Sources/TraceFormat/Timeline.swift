/// Data for `terrapin-trace plot`: exits per time bin for every (level,
/// reason), and latency histograms with power-of-two buckets per level and
/// per (level, reason).
/// Events (interrupt-injected) are left out of both.
public struct Timeline: Sendable {
    public struct Series: Sendable, Equatable {
        public var level: UInt8
        public var reason: ExitReason
        public var counts: [UInt64]
        public var total: UInt64
        /// Handling times, bucketed as `Latency.buckets`.
        public var latency: [UInt64] = [UInt64](repeating: 0, count: 33)
        public var label: String { "L\(level) \(reason.name)" }
    }

    public struct Latency: Sendable, Equatable {
        public var level: UInt8
        /// buckets[0] counts 0 ns; buckets[k] counts [2^(k−1), 2^k) ns, k = 1...32.
        public var buckets: [UInt64]
    }

    /// Timestamp of bin 0's start, ns.
    public var start: UInt64
    public var binWidth: UInt64
    public var binCount: Int
    /// The time all bins span, ns (a Double: it can pass 2^64).
    public var span: Double { Double(binCount) * Double(binWidth) }
    /// Most exits first; ties by level, then reason.
    public var series: [Series]
    /// By level.
    public var latency: [Latency]

    /// Bins `reader` into `bins` equal bins spanning its first to last timestamp.
    public init(_ reader: TraceReader, bins: Int = 120) {
        var lo = UInt64.max, hi: UInt64 = 0
        reader.forEach { r in
            guard !r.kind.isEvent else { return }
            lo = min(lo, r.timestamp)
            hi = max(hi, r.timestamp)
        }
        if lo > hi { lo = 0; hi = 0 }
        let n = max(1, bins)
        let span = hi - lo
        // Checked: a trace may hold any timestamps, 0 and 2^64-1 included.
        let (sum, overflow) = (span / UInt64(n)).addingReportingOverflow(1)
        let width = overflow ? UInt64.max : sum
        binWidth = width
        start = lo
        binCount = n

        var slot: [UInt64: Int] = [:]   // level << 40 | reason key
        var series: [Series] = []
        var latency = [[UInt64]](repeating: [], count: 256)
        var lastKey = UInt64.max, lastSlot = 0
        reader.forEach { r in
            guard !r.kind.isEvent else { return }
            let key = UInt64(r.level) << 40 | ExitReason(r).key
            if key != lastKey {
                if let s = slot[key] {
                    lastSlot = s
                } else {
                    lastSlot = series.count
                    slot[key] = lastSlot
                    series.append(Series(level: r.level, reason: ExitReason(r),
                                         counts: [UInt64](repeating: 0, count: n), total: 0))
                }
                lastKey = key
            }
            let bin = min(n - 1, Int((r.timestamp - lo) / width))
            series[lastSlot].counts[bin] += 1
            series[lastSlot].total += 1
            let bucket = 32 - r.duration.leadingZeroBitCount
            series[lastSlot].latency[bucket] += 1
            let level = Int(r.level)
            if latency[level].isEmpty { latency[level] = [UInt64](repeating: 0, count: 33) }
            latency[level][bucket] += 1
        }
        series.sort { ($0.total, $1.level, $1.reason.key) > ($1.total, $0.level, $0.reason.key) }
        self.series = series
        self.latency = latency.enumerated().filter { !$0.element.isEmpty }
            .map { Latency(level: UInt8($0.offset), buckets: $0.element) }
    }

    /// The first `n` series, with the rest summed into one "other" series (level 0).
    public func topSeries(_ n: Int) -> [Series] {
        guard series.count > n, n > 0 else { return series }
        var head = Array(series.prefix(n - 1))
        var other = Series(level: 0, reason: ExitReason(key: 0), counts: [UInt64](repeating: 0, count: binCount), total: 0)
        for s in series.dropFirst(n - 1) {
            for i in 0..<binCount { other.counts[i] += s.counts[i] }
            for k in 0..<33 { other.latency[k] += s.latency[k] }
            other.total += s.total
        }
        head.append(other)
        return head
    }
}
