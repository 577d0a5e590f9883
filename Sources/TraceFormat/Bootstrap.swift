#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One sample of values (handling times, or exits per episode) cut into
/// `blocks` consecutive parts of the trace, each a log-linear histogram
/// (`DurationBuckets`) kept only over the buckets that some block uses.
/// The unit that the block bootstrap resamples.
public struct BlockHistograms: Sendable, Equatable {
    /// All blocks: `runs` × blocks per run.
    public let blocks: Int
    /// Runs (traces) the blocks come from, each with `blocks / runs` blocks
    /// in order; the bootstrap draws runs first, then blocks inside them.
    public private(set) var runs = 1
    /// `DurationBuckets` indices used by any block, ascending.
    public let buckets: [Int]
    /// blocks × buckets.count counts, block after block.
    public let counts: [UInt64]
    /// Exact extremes of all values (0, 0 when empty).
    public let min: UInt32
    public let max: UInt32

    /// From dense histograms: `blocks` runs of `DurationBuckets.count` counts.
    public init<C: Collection>(blocks: Int, dense: C, min: UInt32, max: UInt32) where C.Element == UInt64, C.Index == Int {
        let nb = DurationBuckets.count
        let base = dense.startIndex
        // Buckets used by any block: one pass over the dense counts.
        var any = [Bool](repeating: false, count: nb)
        for k in 0..<blocks {
            let o = base + k * nb
            for i in 0..<nb where dense[o + i] != 0 { any[i] = true }
        }
        var used: [Int] = []
        for i in 0..<nb where any[i] { used.append(i) }
        var counts: [UInt64] = []
        counts.reserveCapacity(blocks * used.count)
        for k in 0..<blocks { for i in used { counts.append(dense[base + k * nb + i]) } }
        self.blocks = blocks
        buckets = used
        self.counts = counts
        let empty = used.isEmpty
        self.min = empty ? 0 : min
        self.max = empty ? 0 : max
    }

    /// From values tagged with their block (0 ..< blocks).
    public init(blocks: Int, values: [(block: Int, value: UInt32)]) {
        let nb = DurationBuckets.count
        var dense = [UInt64](repeating: 0, count: blocks * nb)
        var lo = UInt32.max, hi: UInt32 = 0
        for (block, v) in values {
            dense[Swift.min(Swift.max(block, 0), blocks - 1) * nb + DurationBuckets.bucket(v)] += 1
            lo = Swift.min(lo, v)
            hi = Swift.max(hi, v)
        }
        self.init(blocks: blocks, dense: dense, min: lo, max: hi)
    }

    /// The runs of `parts` (one sample per run, each with `blocksPerRun`
    /// blocks, nil for a run without values) as one sample of several runs.
    public static func runs(_ parts: [BlockHistograms?], blocksPerRun: Int) -> BlockHistograms {
        let nb = DurationBuckets.count
        var dense = [UInt64](repeating: 0, count: parts.count * blocksPerRun * nb)
        var lo = UInt32.max, hi: UInt32 = 0
        for (r, part) in parts.enumerated() {
            guard let part, part.total > 0 else { continue }
            lo = Swift.min(lo, part.min)
            hi = Swift.max(hi, part.max)
            let w = part.buckets.count
            for k in 0..<Swift.min(part.blocks, blocksPerRun) {
                for (j, b) in part.buckets.enumerated() { dense[((r * blocksPerRun) + k) * nb + b] += part.counts[k * w + j] }
            }
        }
        var out = BlockHistograms(blocks: parts.count * blocksPerRun, dense: dense, min: lo, max: hi)
        out.runs = Swift.max(1, parts.count)
        return out
    }

    public var total: UInt64 { counts.reduce(0, &+) }

    /// The counts of all blocks together, laid out like `buckets`.
    public var merged: [UInt64] {
        var out = [UInt64](repeating: 0, count: buckets.count)
        resample(Array(0..<blocks), into: &out)
        return out
    }

    /// The counts of the blocks in `picks` (repeats allowed), summed into `out`.
    public func resample(_ picks: [Int], into out: inout [UInt64]) {
        let w = buckets.count
        for j in 0..<w { out[j] = 0 }
        counts.withUnsafeBufferPointer { c in
            for k in picks {
                let o = k * w
                for j in 0..<w { out[j] &+= c[o + j] }
            }
        }
    }

    /// The `q` quantile (0...1) of a histogram laid out like `buckets`,
    /// interpolated linearly inside its bucket (the extreme buckets are cut
    /// to the exact min and max); nil when it is empty.
    public func quantile(_ q: Double, counts c: [UInt64]) -> Double? {
        let n = c.reduce(0, &+)
        guard n > 0 else { return nil }
        let target = Swift.min(Swift.max(q, 0), 1) * Double(n)
        var seen = 0.0
        var last = -1
        for j in c.indices where c[j] > 0 {
            last = j
            let here = Double(c[j])
            if seen + here >= target { return value(in: j, fraction: (target - seen) / here) }
            seen += here
        }
        return last >= 0 ? value(in: last, fraction: 1) : nil
    }

    private func value(in j: Int, fraction: Double) -> Double {
        let b = buckets[j]
        var lo = Double(DurationBuckets.lowerBound(b)), hi = Double(DurationBuckets.upperBound(b))
        lo = Swift.min(Swift.max(lo, Double(min)), Double(max))
        hi = Swift.max(Swift.min(hi, Double(max)), lo)
        return lo + Swift.min(Swift.max(fraction, 0), 1) * (hi - lo)
    }
}

/// A quantile in A and B and confidence intervals of its change.
public struct QuantileDelta: Sendable, Equatable {
    /// 0.5 for p50, 0.99 for p99.
    public var quantile: Double
    /// Point estimates, ns (or exits), from all the blocks.
    public var a: Double
    public var b: Double
    /// The bootstrap interval of b − a; nil when it could not be formed
    /// (fewer than two blocks, or too many resamples without a value).
    public var low: Double?
    public var high: Double?
    /// The bootstrap interval of b / a − 1 (resampled ratios, so never
    /// below −100%); nil as above, or when a is 0.
    public var lowChange: Double?
    public var highChange: Double?

    public init(quantile: Double, a: Double, b: Double, low: Double? = nil, high: Double? = nil,
                lowChange: Double? = nil, highChange: Double? = nil) {
        self.quantile = quantile; self.a = a; self.b = b; self.low = low; self.high = high
        self.lowChange = a > 0 ? lowChange : nil
        self.highChange = a > 0 ? highChange : nil
    }

    public var delta: Double { b - a }
    /// b / a − 1; nil when a is 0.
    public var change: Double? { a > 0 ? (b - a) / a : nil }
    /// The interval lies wholly on one side of "no change" (the ratio's
    /// interval when a > 0, else the difference's).
    public var excludesZero: Bool {
        if let lowChange, let highChange { return lowChange > 0 || highChange < 0 }
        guard a == 0, let low, let high else { return false }
        return low > 0 || high < 0
    }
}

/// A percentile block bootstrap of quantile changes. Each trace is cut into
/// `blocks` consecutive parts of equal record count; a resample draws that
/// many parts with replacement, on each side independently, and takes the
/// quantile of their merged histogram. Whole blocks, not single values, are
/// drawn because exits are not independent: a run has slow and fast
/// stretches, and drawing single values would make the interval far too
/// narrow. With several runs (traces) per side, the runs are drawn first,
/// so that the interval also covers how runs differ from one another,
/// which on a shared machine is often more than a run varies inside. The generator (`SeededRandom`) is seeded, so the result is
/// reproducible.
public struct Bootstrap: Sendable, Equatable {
    public var resamples: Int
    public var seed: UInt64
    /// Two-sided confidence level, e.g. 0.95.
    public var confidence: Double
    /// Blocks per trace.
    public var blocks: Int

    public init(resamples: Int = 1000, seed: UInt64 = 1, confidence: Double = 0.95, blocks: Int = 20) {
        self.resamples = resamples; self.seed = seed; self.confidence = confidence; self.blocks = blocks
    }

    /// For each pair, the changes at `quantiles`; nil where a side is missing or empty.
    public func compare(_ pairs: [(a: BlockHistograms?, b: BlockHistograms?)], quantiles: [Double]) -> [[QuantileDelta]?] {
        var rng = SeededRandom(seed: seed)
        var results: [[QuantileDelta]?] = []
        for (a, b) in pairs {
            guard let a, let b, a.total > 0, b.total > 0 else { results.append(nil); continue }
            let ma = a.merged, mb = b.merged
            let points = quantiles.map { q in (a.quantile(q, counts: ma) ?? 0, b.quantile(q, counts: mb) ?? 0) }
            guard a.blocks >= 2, b.blocks >= 2, a.blocks % a.runs == 0, b.blocks % b.runs == 0, resamples > 0 else {
                results.append(zip(quantiles, points).map { QuantileDelta(quantile: $0, a: $1.0, b: $1.1) })
                continue
            }
            let alpha = 1 - confidence
            var deltas = [[Double]](repeating: [], count: quantiles.count)
            var ratios = [[Double]](repeating: [], count: quantiles.count)
            var ra = [UInt64](repeating: 0, count: a.buckets.count), rb = [UInt64](repeating: 0, count: b.buckets.count)
            var pa = [Int](repeating: 0, count: a.blocks), pb = [Int](repeating: 0, count: b.blocks)
            for _ in 0..<resamples {
                Self.draw(a, into: &pa, &rng)
                Self.draw(b, into: &pb, &rng)
                a.resample(pa, into: &ra)
                b.resample(pb, into: &rb)
                for (i, q) in quantiles.enumerated() {
                    if let qa = a.quantile(q, counts: ra), let qb = b.quantile(q, counts: rb) {
                        deltas[i].append(qb - qa)
                        ratios[i].append(qa > 0 ? qb / qa - 1 : (qb > 0 ? .infinity : 0))
                    }
                }
            }
            results.append(quantiles.indices.map { i in
                let point = QuantileDelta(quantile: quantiles[i], a: points[i].0, b: points[i].1)
                guard let d = Self.interval(deltas[i], resamples: resamples, alpha: alpha),
                      let r = Self.interval(ratios[i], resamples: resamples, alpha: alpha) else { return point }
                return QuantileDelta(quantile: quantiles[i], a: point.a, b: point.b, low: d.0, high: d.1,
                                     lowChange: r.0, highChange: r.1)
            })
        }
        return results
    }

    /// The percentile interval of `values`. A resample without values on a
    /// side has no quantile; if more than alpha/2 of them lack one, there is none.
    private static func interval(_ values: [Double], resamples: Int, alpha: Double) -> (Double, Double)? {
        guard !values.isEmpty, Double(resamples - values.count) <= alpha / 2 * Double(resamples) else { return nil }
        let d = values.sorted()
        let last = Double(d.count - 1)
        return (d[Int((alpha / 2 * last).rounded(.down))], d[Int(((1 - alpha / 2) * last).rounded(.up))])
    }

    /// Block indices for one resample: with one run, `blocks` draws among
    /// all blocks; with several, a run drawn for each run's worth of blocks,
    /// then blocks drawn inside it.
    private static func draw(_ h: BlockHistograms, into picks: inout [Int], _ rng: inout SeededRandom) {
        if h.runs <= 1 {
            for k in picks.indices { picks[k] = rng.below(h.blocks) }
            return
        }
        let per = h.blocks / h.runs
        var k = 0
        for _ in 0..<h.runs {
            let run = rng.below(h.runs)
            for _ in 0..<per { picks[k] = run * per + rng.below(per); k += 1 }
        }
    }

    /// The standard normal quantile z with P(|Z| ≤ z) = `confidence`.
    public static func normalQuantile(twoSided confidence: Double) -> Double {
        let target = 1 - (1 - confidence) / 2
        var lo = 0.0, hi = 10.0
        for _ in 0..<80 {
            let mid = (lo + hi) / 2
            if 0.5 * erfc(-mid / 2.0.squareRoot()) < target { lo = mid } else { hi = mid }
        }
        return (lo + hi) / 2
    }
}

/// The same percentile bootstrap over exact values with one value per run,
/// where no block structure is needed: `terrapin experiment paging`
/// (docs/SHADOW.md) summarises each row by the median of its per-run
/// figures and compares two modes by the ratio of their medians.
extension Bootstrap {
    public struct MedianEstimate: Sendable, Equatable {
        public var median: Double, low: Double, high: Double
        public init(median: Double, low: Double, high: Double) { self.median = median; self.low = low; self.high = high }
    }

    /// The median of `values`, with the interval of the median over
    /// `resamples` draws of as many values with replacement; nil when empty.
    public func median(of values: [Double]) -> MedianEstimate? {
        guard !values.isEmpty else { return nil }
        var rng = SeededRandom(seed: seed)
        let medians = (0..<resamples).map { _ in Self.median(Self.draw(values, &rng)) }
        let point = Self.median(values)
        guard let (low, high) = Self.interval(medians, resamples: resamples, alpha: 1 - confidence) else {
            return MedianEstimate(median: point, low: point, high: point)
        }
        return MedianEstimate(median: point, low: low, high: high)
    }

    /// median(b) / median(a), with its interval from resampling each side
    /// on its own; nil when a side is empty or a's median is not positive.
    public func medianRatio(_ a: [Double], _ b: [Double]) -> MedianEstimate? {
        guard !a.isEmpty, !b.isEmpty, Self.median(a) > 0 else { return nil }
        var rng = SeededRandom(seed: seed)
        var ratios: [Double] = []
        for _ in 0..<resamples {
            let ma = Self.median(Self.draw(a, &rng)), mb = Self.median(Self.draw(b, &rng))
            if ma > 0 { ratios.append(mb / ma) }
        }
        let point = Self.median(b) / Self.median(a)
        guard let (low, high) = Self.interval(ratios, resamples: resamples, alpha: 1 - confidence) else {
            return MedianEstimate(median: point, low: point, high: point)
        }
        return MedianEstimate(median: point, low: low, high: high)
    }

    private static func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    private static func draw(_ values: [Double], _ rng: inout SeededRandom) -> [Double] {
        values.indices.map { _ in values[rng.below(values.count)] }
    }
}
