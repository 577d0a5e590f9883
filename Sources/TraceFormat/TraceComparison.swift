#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Two traces side by side (`terrapin-trace compare A B`): per (level,
/// reason, handler), per level, and per episode root (level, reason).
///
/// * Counts are divided by each trace's units of work when given. A count
///   change has an interval from the normal approximation of the log rate
///   ratio (Poisson counts): log(b/a) ± z·√(1/a + 1/b).
/// * Handling times (and exits and time per episode) are compared as
///   distributions: the p50 and p99 of B − A, with a block-bootstrap
///   interval (`Bootstrap`).
/// * A change is flagged only when its interval excludes "no change" and the
///   change itself is beyond the threshold (and, for times with one run on a
///   side, when the interval lies beyond ±`runNoise`). The confidence level is for all
///   tests together (Bonferroni: each interval is at 1 − (1 − level)/tests). Quantiles are tested only when
///   both sides have at least `minCount` values; a count only when the larger
///   side has. A row that exists on one side only is flagged when that side
///   has at least `minCount`.
public struct TraceComparison: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Flag changes beyond this fraction (0.10 = 10%).
        public var threshold: Double
        /// Fewer values than this (per side) are shown and never flagged.
        public var minCount: UInt64
        public var bootstrap: Bootstrap

        /// How much runs of one workload differ in time (a fraction), for
        /// sides of one run, whose intervals cannot show it: a time change
        /// is then flagged only when its whole interval lies beyond ±this.
        /// 0 when each side has several runs (the bootstrap draws runs).
        public var runNoise: Double

        public init(threshold: Double = 0.10, minCount: UInt64 = 50, bootstrap: Bootstrap = Bootstrap(),
                    runNoise: Double = 0) {
            self.threshold = threshold; self.minCount = minCount; self.bootstrap = bootstrap; self.runNoise = runNoise
        }
    }

    /// A count in A and B, raw and per unit of work.
    public struct CountChange: Sendable, Equatable {
        public var a: UInt64
        public var b: UInt64
        public var normA: Double
        public var normB: Double
        /// The interval of the change (a fraction); nil when a side is 0.
        public var low: Double?
        public var high: Double?
        public var flagged: Bool

        /// normB / normA − 1; nil when A is 0.
        public var change: Double? { normA == 0 ? nil : normB / normA - 1 }
        public var ratio: Double? { normA == 0 ? nil : normB / normA }
    }

    /// The p50 and p99 of one side.
    public struct Quantiles: Sendable, Equatable {
        public var p50: Double
        public var p99: Double
    }

    /// A quantile change with its verdict.
    public struct Tested: Sendable, Equatable {
        public var delta: QuantileDelta
        public var flagged: Bool
    }

    /// One (level, reason, handler), or a level total (reason and handler nil).
    public struct Row: Sendable, Equatable {
        public var level: UInt8
        public var reason: ExitReason?
        public var handler: Handler?
        public var count: CountChange
        /// Total handling time, ns, raw and per unit of work (not tested).
        public var timeA: UInt64
        public var timeB: UInt64
        public var normTimeA: Double
        public var normTimeB: Double
        /// Handling time quantiles, ns, of each side alone (nil where it has no exits, and for level totals).
        public var p50A: Double?
        public var p50B: Double?
        public var p99A: Double?
        public var p99B: Double?
        /// Their changes; nil when a side has no exits (and for level totals).
        public var p50: Tested?
        public var p99: Tested?
        /// Both sides have at least `minCount` exits.
        public var enoughSamples: Bool

        public var timeChange: Double? { normTimeA == 0 ? nil : normTimeB / normTimeA - 1 }
        /// What was flagged: "new", "gone", "count", "p50", "p99".
        public var flags: [String] {
            var f: [String] = []
            if count.flagged { f.append(count.a == 0 ? "new" : count.b == 0 ? "gone" : "count") }
            if p50?.flagged == true { f.append("p50") }
            if p99?.flagged == true { f.append("p99") }
            return f
        }
        public var flagged: Bool { !flags.isEmpty }
    }

    /// Episodes of one root (level, reason): how many, exits per episode, time per episode.
    public struct EpisodeRow: Sendable, Equatable {
        public var level: UInt8
        public var reason: ExitReason
        public var episodes: CountChange
        /// Mean exits per episode; nil on a side without such episodes.
        public var meanMultiplicationA: Double?
        public var meanMultiplicationB: Double?
        /// p50 and p99 of exits per episode and of episode time (ns), each side alone.
        public var multiplicationA: Quantiles?
        public var multiplicationB: Quantiles?
        public var timeA: Quantiles?
        public var timeB: Quantiles?
        public var multiplicationP50: Tested?
        public var multiplicationP99: Tested?
        public var timeP50: Tested?
        public var timeP99: Tested?
        public var enoughSamples: Bool

        public var flags: [String] {
            var f: [String] = []
            if episodes.flagged { f.append(episodes.a == 0 ? "new" : episodes.b == 0 ? "gone" : "episodes") }
            if multiplicationP50?.flagged == true { f.append("exits p50") }
            if multiplicationP99?.flagged == true { f.append("exits p99") }
            if timeP50?.flagged == true { f.append("time p50") }
            if timeP99?.flagged == true { f.append("time p99") }
            return f
        }
        public var flagged: Bool { !flags.isEmpty }
    }

    /// Units of work of A and B; nil when not normalised.
    public var unitsA: Double?
    public var unitsB: Double?
    public var settings: Settings
    public var threshold: Double { settings.threshold }
    /// One row per (level, reason, handler) in either trace, sorted.
    public var rows: [Row]
    /// One row per level (exits only, events excluded), sorted.
    public var levels: [Row]
    /// One row per episode root in either trace, sorted; empty when neither has episodes.
    public var episodes: [EpisodeRow]
    /// How many changes were tested (counts and quantiles with enough values).
    public var tests: Int
    /// The confidence of each interval: `settings.bootstrap.confidence` shared
    /// among the tests (Bonferroni), so that it holds for all of them together.
    public var perTestConfidence: Double

    /// Compares `a` and `b`, with episode rows from `episodesA`/`episodesB` when given.
    public init(_ a: TraceSummary, _ b: TraceSummary, episodesA: EpisodeAnalysis? = nil, episodesB: EpisodeAnalysis? = nil,
                unitsA: Double? = nil, unitsB: Double? = nil, settings: Settings = Settings()) {
        self.init(a, b, rootsA: episodesA?.roots(blocks: settings.bootstrap.blocks) ?? [],
                  rootsB: episodesB?.roots(blocks: settings.bootstrap.blocks) ?? [],
                  unitsA: unitsA, unitsB: unitsB, settings: settings)
    }

    /// Compares `a` and `b`. The summaries should be made with
    /// `settings.bootstrap.blocks` blocks (`TraceSummary(reader, blocks:)`,
    /// or `TraceSummary.merging` of such runs); without blocks no quantile
    /// interval is formed and none is flagged. Episode rows come from the
    /// roots of each side (`EpisodeAnalysis.roots(blocks:)`).
    public init(_ a: TraceSummary, _ b: TraceSummary, rootsA ra: [EpisodeAnalysis.RootStats],
                rootsB rb: [EpisodeAnalysis.RootStats], unitsA: Double? = nil, unitsB: Double? = nil,
                settings: Settings = Settings()) {
        self.unitsA = unitsA
        self.unitsB = unitsB
        self.settings = settings
        let ua = unitsA ?? 1, ub = unitsB ?? 1
        let threshold = settings.threshold, minCount = settings.minCount

        // Rows per (level, reason, handler).
        struct Key: Hashable, Comparable {
            var level: UInt8, reason: UInt64, handler: UInt8
            static func < (x: Key, y: Key) -> Bool { (x.level, x.reason, x.handler) < (y.level, y.reason, y.handler) }
        }
        var sides: [Key: (a: Int?, b: Int?)] = [:]
        for (i, g) in a.groups.enumerated() {
            sides[Key(level: g.level, reason: g.reason.key, handler: g.handler.rawValue), default: (nil, nil)].a = i
        }
        for (i, g) in b.groups.enumerated() {
            sides[Key(level: g.level, reason: g.reason.key, handler: g.handler.rawValue), default: (nil, nil)].b = i
        }
        let keys = sides.keys.sorted()
        struct RootKey: Hashable, Comparable {
            var level: UInt8, reason: UInt64
            static func < (x: RootKey, y: RootKey) -> Bool { (x.level, x.reason) < (y.level, y.reason) }
        }
        var roots: [RootKey: (a: EpisodeAnalysis.RootStats?, b: EpisodeAnalysis.RootStats?)] = [:]
        for r in ra { roots[RootKey(level: r.level, reason: r.reason.key), default: (nil, nil)].a = r }
        for r in rb { roots[RootKey(level: r.level, reason: r.reason.key), default: (nil, nil)].b = r }
        let rootKeys = roots.keys.sorted()

        // Family-wise: the confidence level holds for all tests together
        // (Bonferroni), so that an A/A comparison of many rows stays quiet.
        func counted(_ x: Int?, _ groups: [TraceSummary.Group]) -> UInt64 { x.map { groups[$0].count } ?? 0 }
        var tests = 0
        for k in keys {
            let ca = counted(sides[k]!.a, a.groups), cb = counted(sides[k]!.b, b.groups)
            if max(ca, cb) >= minCount { tests += 1 }
            if ca >= minCount && cb >= minCount { tests += 2 }
        }
        for k in rootKeys {
            let ea = UInt64(roots[k]!.a?.episodes ?? 0), eb = UInt64(roots[k]!.b?.episodes ?? 0)
            if max(ea, eb) >= minCount { tests += 1 }
            if ea >= minCount && eb >= minCount { tests += 4 }
        }
        self.tests = tests
        var perTest = settings.bootstrap
        perTest.confidence = 1 - (1 - settings.bootstrap.confidence) / Double(max(1, tests))
        self.perTestConfidence = perTest.confidence
        let z = Bootstrap.normalQuantile(twoSided: perTest.confidence)

        func counts(_ ca: UInt64, _ cb: UInt64) -> CountChange {
            var c = CountChange(a: ca, b: cb, normA: Double(ca) / ua, normB: Double(cb) / ub, low: nil, high: nil, flagged: false)
            if ca > 0 && cb > 0 {
                let r = c.normB / c.normA
                let se = (1 / Double(ca) + 1 / Double(cb)).squareRoot()
                c.low = r * exp(-z * se) - 1
                c.high = r * exp(z * se) - 1
                let excludes = c.low! > 0 || c.high! < 0
                c.flagged = max(ca, cb) >= minCount && excludes && abs(r - 1) > threshold
            } else if ca != cb {
                c.flagged = max(ca, cb) >= minCount
            }
            return c
        }
        /// `time`: a handling or episode time, which `runNoise` applies to.
        func tested(_ d: QuantileDelta?, _ enough: Bool, time: Bool = true) -> Tested? {
            guard let d else { return nil }
            var beyond = false
            if let c = d.change { beyond = abs(c) > threshold } else { beyond = d.delta != 0 }
            let noise = time ? settings.runNoise : 0
            if noise > 0, let lo = d.lowChange, let hi = d.highChange { beyond = beyond && (lo > noise || hi < -noise) }
            return Tested(delta: d, flagged: enough && d.excludesZero && beyond)
        }

        let blocksA = a.groupBlocks.count == a.groups.count ? a.groupBlocks : nil
        let blocksB = b.groupBlocks.count == b.groups.count ? b.groupBlocks : nil
        let pairs = keys.map { k -> (a: BlockHistograms?, b: BlockHistograms?) in
            let (ia, ib) = sides[k]!
            return (ia.flatMap { i in blocksA.map { $0[i] } ?? Self.single(a.groups[i].histogram) },
                    ib.flatMap { i in blocksB.map { $0[i] } ?? Self.single(b.groups[i].histogram) })
        }
        let quantiles = perTest.compare(pairs, quantiles: [0.5, 0.99])
        rows = keys.enumerated().map { n, k in
            let (ia, ib) = sides[k]!
            let ga = ia.map { a.groups[$0] }, gb = ib.map { b.groups[$0] }
            let ca = ga?.count ?? 0, cb = gb?.count ?? 0
            let ta = ga?.totalDuration ?? 0, tb = gb?.totalDuration ?? 0
            let enough = ca >= minCount && cb >= minCount
            let qa = Self.points(pairs[n].a), qb = Self.points(pairs[n].b)
            return Row(level: k.level, reason: ExitReason(key: k.reason), handler: Handler(rawValue: k.handler),
                       count: counts(ca, cb), timeA: ta, timeB: tb, normTimeA: Double(ta) / ua, normTimeB: Double(tb) / ub,
                       p50A: qa?.p50, p50B: qb?.p50, p99A: qa?.p99, p99B: qb?.p99,
                       p50: tested(quantiles[n]?[0], enough), p99: tested(quantiles[n]?[1], enough), enoughSamples: enough)
        }

        // Level totals.
        var lv: [UInt8: (ca: UInt64, cb: UInt64, ta: UInt64, tb: UInt64)] = [:]
        for t in a.levelTotals { lv[t.level, default: (0, 0, 0, 0)].ca = t.exits; lv[t.level, default: (0, 0, 0, 0)].ta = t.time }
        for t in b.levelTotals { lv[t.level, default: (0, 0, 0, 0)].cb = t.exits; lv[t.level, default: (0, 0, 0, 0)].tb = t.time }
        levels = lv.keys.sorted().map { l in
            let v = lv[l]!
            return Row(level: l, reason: nil, handler: nil, count: counts(v.ca, v.cb), timeA: v.ta, timeB: v.tb,
                       normTimeA: Double(v.ta) / ua, normTimeB: Double(v.tb) / ub,
                       p50A: nil, p50B: nil, p99A: nil, p99B: nil, p50: nil, p99: nil,
                       enoughSamples: v.ca >= minCount && v.cb >= minCount)
        }

        // Episode roots.
        let multiplication = perTest.compare(
            rootKeys.map { (roots[$0]!.a?.multiplicationBlocks, roots[$0]!.b?.multiplicationBlocks) }, quantiles: [0.5, 0.99])
        let times = perTest.compare(
            rootKeys.map { (roots[$0]!.a?.timeBlocks, roots[$0]!.b?.timeBlocks) }, quantiles: [0.5, 0.99])
        episodes = rootKeys.enumerated().map { n, k in
            let (sa, sb) = roots[k]!
            let ea = UInt64(sa?.episodes ?? 0), eb = UInt64(sb?.episodes ?? 0)
            let enough = ea >= minCount && eb >= minCount
            return EpisodeRow(level: k.level, reason: ExitReason(key: k.reason), episodes: counts(ea, eb),
                              meanMultiplicationA: sa.map { $0.multiplication.mean },
                              meanMultiplicationB: sb.map { $0.multiplication.mean },
                              multiplicationA: Self.points(sa?.multiplicationBlocks), multiplicationB: Self.points(sb?.multiplicationBlocks),
                              timeA: Self.points(sa?.timeBlocks), timeB: Self.points(sb?.timeBlocks),
                              multiplicationP50: tested(multiplication[n]?[0], enough, time: false),
                              multiplicationP99: tested(multiplication[n]?[1], enough, time: false),
                              timeP50: tested(times[n]?[0], enough), timeP99: tested(times[n]?[1], enough),
                              enoughSamples: enough)
        }
    }

    /// p50 and p99 of one side alone.
    private static func points(_ h: BlockHistograms?) -> Quantiles? {
        guard let h else { return nil }
        let m = h.merged
        guard let p50 = h.quantile(0.5, counts: m), let p99 = h.quantile(0.99, counts: m) else { return nil }
        return Quantiles(p50: p50, p99: p99)
    }

    /// A histogram as one block: no interval can be formed from it.
    private static func single(_ h: DurationHistogram) -> BlockHistograms {
        BlockHistograms(blocks: 1, dense: h.buckets, min: h.minimum, max: h.max)
    }

    public var flagged: [Row] { rows.filter(\.flagged) }
    public var flaggedEpisodes: [EpisodeRow] { episodes.filter(\.flagged) }

    /// The unit-of-work count stored under `key` in `metadata`: the last
    /// whitespace-separated word of the value that is a positive number, so
    /// both `iterations=5000` and `cmdline=pio-storm.elf 5000` give 5000.
    public static func workUnits(_ metadata: TraceMetadata, key: String) -> Double? {
        guard let value = metadata[key] else { return nil }
        for word in value.split(separator: " ").reversed() {
            if let v = Double(word), v.isFinite, v > 0 { return v }
        }
        return nil
    }
}
