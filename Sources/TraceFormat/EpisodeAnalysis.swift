/// Exit multiplication (see "Episodes" in Traces/README.md).
///
/// An episode is identified by a non-zero episode id E. Its root is the
/// record with id E that is reflected to L1 from level 2 or deeper (the L2
/// exit that started it); its records are every record with id E, wherever
/// they are in the file. Its exits are those records that are not events
/// (interrupt-injected): its exit multiplication, the L0 exits it caused,
/// counting the root. Its time is max(timestamp + duration) − min(timestamp)
/// over its records. Ids that never have a root are orphans, reported apart.
///
/// One pass over the trace, together with burst detection, in bounded
/// memory (`EpisodePass`): at most `EpisodePass.openLimit` episodes are open
/// at a time; an episode is closed, and folded into the aggregates (the
/// distributions, the per-root statistics, the worst episodes and the
/// sequence counts), when the open table is full and it is among the half
/// least recently seen, or at the end. A record of an episode already
/// closed is counted in `lateRecords` and otherwise left out (Traces/README.md,
/// "Episodes"): in a trace where each vCPU runs one episode at a time this
/// needs 32,768 episodes to start between two records of one episode.
/// `episodes` keeps every episode only when asked (`keepEpisodes`).
public struct EpisodeAnalysis: Sendable {
    public struct Episode: Sendable, Equatable {
        public var id: UInt64
        public var vcpu: UInt16 = 0
        public var rootLevel: UInt8 = 0
        public var rootReason = ExitReason(key: 0)
        /// Index of the episode's first and last record in the file.
        public var firstRecord: Int
        public var lastRecord: Int
        public var start: UInt64
        public var end: UInt64
        public var exits: UInt32 = 0
        public var records: UInt32 = 0
        var hasRoot = false
        var sequenceHash: UInt64 = 0x6A09_E667_F3BC_C908
        var runKey: UInt64 = .max
        var runLength: UInt32 = 0

        /// ns from the first record's timestamp to the latest end.
        public var time: UInt64 { end &- start }
    }

    /// A distinct exit sequence and how many episodes had it.
    public struct ExitSequence: Sendable, Equatable {
        /// Run-length steps in order: (reason, repeat count).
        public var steps: [(reason: ExitReason, count: Int)]
        public var episodes: Int
        /// Exits of one such episode.
        public var exits: Int

        public init(steps: [(reason: ExitReason, count: Int)], episodes: Int, exits: Int) {
            self.steps = steps
            self.episodes = episodes
            self.exits = exits
        }

        public static func == (a: ExitSequence, b: ExitSequence) -> Bool {
            a.episodes == b.episodes && a.exits == b.exits && a.text == b.text
        }

        /// e.g. "EPT_VIOLATION → VMREAD×5 → VMWRITE×2 → VMRESUME", with
        /// repeated groups of steps collapsed: "IO_INSTRUCTION → (io-in →
        /// io-out)×375 → VMRESUME" (see `collapse`); at most `maxSteps`
        /// parts, then "→ … (+N steps)".
        public func text(maxSteps: Int = 16) -> String {
            func step(_ s: (reason: ExitReason, count: Int)) -> String {
                s.count == 1 ? s.reason.name : "\(s.reason.name)×\(s.count)"
            }
            let groups = ExitSequence.collapse(steps)
            var parts = groups.prefix(maxSteps).map { g in
                g.repeats == 1 ? g.steps.map(step).joined(separator: " → ")
                    : "(" + g.steps.map(step).joined(separator: " → ") + ")×\(g.repeats)"
            }
            if groups.count > maxSteps {
                let hidden = groups.dropFirst(maxSteps).reduce(0) { $0 + $1.steps.count * $1.repeats }
                parts.append("… (+\(hidden) steps)")
            }
            return parts.joined(separator: " → ")
        }
        public var text: String { text() }

        /// Run-length steps with repeated groups of 2 to `maxPeriod` steps
        /// collapsed: at each position, the period whose repeats cover the
        /// most steps (at least two repeats; the shorter period on a tie),
        /// else the step alone. `A → B → A → B → A → B → C` becomes
        /// `(A → B)×3 → C`.
        public static func collapse(_ steps: [(reason: ExitReason, count: Int)], maxPeriod: Int = 4)
            -> [(steps: [(reason: ExitReason, count: Int)], repeats: Int)] {
            let n = steps.count
            func same(_ i: Int, _ j: Int) -> Bool { steps[i].reason == steps[j].reason && steps[i].count == steps[j].count }
            var out: [(steps: [(reason: ExitReason, count: Int)], repeats: Int)] = []
            var i = 0
            while i < n {
                var best = (period: 1, repeats: 1)
                if maxPeriod >= 2 {
                    for p in 2...maxPeriod where i + 2 * p <= n {
                        var r = 1
                        while i + (r + 1) * p <= n && (0..<p).allSatisfy({ same(i + $0, i + r * p + $0) }) { r += 1 }
                        if r >= 2 && r * p > best.period * best.repeats { best = (p, r) }
                    }
                }
                if best.repeats >= 2 {
                    out.append((Array(steps[i..<(i + best.period)]), best.repeats))
                    i += best.period * best.repeats
                } else {
                    out.append(([steps[i]], 1))
                    i += 1
                }
            }
            return out
        }
    }

    /// Episodes with a root, in order of their first record; empty unless
    /// the analysis was made with `keepEpisodes`.
    public var episodes: [Episode]
    /// Episodes with a root.
    public var episodeCount: Int
    public var orphanEpisodes: Int
    public var orphanRecords: UInt64
    /// Records whose episode had been closed already (see the type's comment).
    public var lateRecords: UInt64
    /// Reflected exits from level 2 or deeper whose episode id is 0.
    public var reflectedWithoutEpisode: UInt64
    /// All exits in the trace (events excluded), and those inside rooted episodes.
    public var totalExits: UInt64
    public var exitsInEpisodes: UInt64
    /// Exit multiplication and episode time distributions (log-linear, exact below 32).
    public var multiplication: DurationHistogram
    public var time: DurationHistogram
    /// Distinct sequences, most common first (ties: more exits first, then text).
    public var sequences: [ExitSequence]
    public var bursts: BurstDetector.Result
    /// Records in the analysed trace.
    public var recordCount: Int
    public var firstTimestamp: UInt64?
    public var lastTimestamp: UInt64?
    /// The per-root statistics in `rootBlocks` blocks, and the `worstCount`
    /// episodes with the most exits, gathered as episodes close.
    let rootStats: [RootStats]
    let rootBlocks: Int
    let worstEpisodes: [Episode]
    let worstCount: Int
    /// Episodes open at a time at most (see the type's comment).
    public static var openLimit: Int { EpisodePass.openLimit }

    /// Analyses `reader`. `topSequences` bounds `sequences`, `worst` the
    /// episodes `worst(_:)` can return without `keepEpisodes`, and `blocks`
    /// is the block count of `roots()`.
    public init(_ reader: TraceReader, window: UInt64 = 1_000_000, threshold: BurstThreshold = .meanMultiple(3),
                topSequences: Int = 10, worst: Int = 10, blocks: Int = 1, keepEpisodes: Bool = true) {
        var pass = EpisodePass(window: window, records: reader.recordCount, blocks: max(1, blocks),
                               worst: max(0, worst), sequences: topSequences > 0, keep: keepEpisodes)
        var i = 0
        reader.scanReleasingPages { r in
            pass.add(r, index: i)
            i &+= 1
        }
        pass.finish()
        let bySequence = zip(pass.sequenceCounts, pass.sequenceReps).map { (count: $0, rep: $1) }
        let top = bySequence.sorted {
            ($0.count, $0.rep.exits, $1.rep.id) > ($1.count, $1.rep.exits, $0.rep.id)
        }.prefix(max(0, topSequences))
        sequences = top.map { t in
            ExitSequence(steps: EpisodeAnalysis.steps(of: t.rep, in: reader), episodes: t.count, exits: Int(t.rep.exits))
        }
        // Equal counts: order by the rendered text, so the output is stable.
        sequences.sort { ($0.episodes, $0.exits) != ($1.episodes, $1.exits)
            ? ($0.episodes, $0.exits) > ($1.episodes, $1.exits) : $0.text < $1.text }
        // Closed episodes come mostly in order already: sorting a copy only when not.
        episodes = pass.kept
        if zip(episodes, episodes.dropFirst()).contains(where: { $0.firstRecord > $1.firstRecord }) {
            episodes.sort { $0.firstRecord < $1.firstRecord }
        }
        episodeCount = pass.rooted
        orphanEpisodes = pass.orphans
        orphanRecords = pass.orphanRecords
        lateRecords = pass.lateRecords
        reflectedWithoutEpisode = pass.reflectedWithoutEpisode
        totalExits = pass.exits
        exitsInEpisodes = pass.exitsInEpisodes
        multiplication = pass.multiplication
        time = pass.time
        rootStats = pass.roots.result()
        rootBlocks = max(1, blocks)
        worstEpisodes = pass.worst.episodes
        worstCount = max(0, worst)
        recordCount = reader.recordCount
        firstTimestamp = pass.records == 0 ? nil : pass.minTime
        lastTimestamp = pass.records == 0 ? nil : pass.maxTime
        let span = pass.records == 0 ? 0 : pass.maxTime - pass.minTime
        let mean = span == 0 ? 0 : Double(pass.exits) / (Double(span) / 1e9)
        bursts = pass.bursts.finish(threshold: threshold.resolve(meanRate: mean))
    }

    /// Episodes of one root (level, reason): their exit multiplication and time.
    public struct RootStats: Sendable, Equatable {
        public var level: UInt8
        public var reason: ExitReason
        public var episodes: Int
        public var exits: UInt64
        public var multiplication: DurationHistogram
        public var time: DurationHistogram
        /// The same values in `blocks` consecutive parts of the trace (by
        /// the episode's first record), for the block bootstrap.
        public var multiplicationBlocks: BlockHistograms
        public var timeBlocks: BlockHistograms
    }

    /// One entry per root (level, reason), in level and reason order, with
    /// the block count the analysis was made with.
    public func roots() -> [RootStats] { rootStats }

    /// The same in `blocks` blocks: as gathered when `blocks` is the
    /// analysis's block count, else recomputed from `episodes`, which
    /// needs `keepEpisodes`.
    public func roots(blocks: Int) -> [RootStats] {
        if max(1, blocks) == rootBlocks { return rootStats }
        precondition(episodes.count == episodeCount, "roots(blocks:) with another block count needs keepEpisodes")
        var acc = RootAccumulator(blocks: blocks, recordCount: recordCount)
        for e in episodes { acc.add(e) }
        return acc.result()
    }

    /// The roots of several runs (each from `roots(blocks: blocksPerRun)`)
    /// as one list, their blocks laid out run after run (`BlockHistograms.runs`).
    public static func mergingRoots(_ runs: [[RootStats]], blocksPerRun: Int) -> [RootStats] {
        if runs.count == 1 { return runs[0] }
        struct Key: Hashable, Comparable {
            var level: UInt8, reason: UInt64
            static func < (x: Key, y: Key) -> Bool { (x.level, x.reason) < (y.level, y.reason) }
        }
        var merged: [Key: (stats: RootStats, mult: [BlockHistograms?], time: [BlockHistograms?])] = [:]
        for (r, roots) in runs.enumerated() {
            for s in roots {
                let key = Key(level: s.level, reason: s.reason.key)
                let none = [BlockHistograms?](repeating: nil, count: runs.count)
                var entry = merged[key] ?? (RootStats(level: s.level, reason: s.reason, episodes: 0, exits: 0,
                                                      multiplication: DurationHistogram(), time: DurationHistogram(),
                                                      multiplicationBlocks: s.multiplicationBlocks, timeBlocks: s.timeBlocks),
                                            none, none)
                entry.stats.episodes += s.episodes
                entry.stats.exits += s.exits
                entry.stats.multiplication.merge(s.multiplication)
                entry.stats.time.merge(s.time)
                entry.mult[r] = s.multiplicationBlocks
                entry.time[r] = s.timeBlocks
                merged[key] = entry
            }
        }
        return merged.keys.sorted().map { k in
            var e = merged[k]!
            e.stats.multiplicationBlocks = BlockHistograms.runs(e.mult, blocksPerRun: blocksPerRun)
            e.stats.timeBlocks = BlockHistograms.runs(e.time, blocksPerRun: blocksPerRun)
            return e.stats
        }
    }

    /// The `n` episodes with the most exits (ties: longer time, then lower
    /// id): at most `worst` of the init unless the episodes were kept.
    public func worst(_ n: Int) -> [Episode] {
        if n <= worstCount || episodes.count != episodeCount { return Array(worstEpisodes.prefix(max(0, n))) }
        var top = TopEpisodes(limit: n)
        for e in episodes { top.add(e) }
        return top.episodes
    }

    /// The run-length exit sequence of `e`, read back from the trace.
    public static func steps(of e: Episode, in reader: TraceReader) -> [(reason: ExitReason, count: Int)] {
        var steps: [(reason: ExitReason, count: Int)] = []
        guard e.firstRecord <= e.lastRecord, e.lastRecord < reader.recordCount else { return steps }
        for i in e.firstRecord...e.lastRecord {
            let r = reader[i]
            guard r.episode == e.id, !r.kind.isEvent else { continue }
            let reason = ExitReason(r)
            if let last = steps.last, last.reason == reason {
                steps[steps.count - 1].count += 1
            } else {
                steps.append((reason, 1))
            }
        }
        return steps
    }
}

@inline(__always)
func mix(_ h: UInt64, _ key: UInt64, _ run: UInt32) -> UInt64 {
    var x = (h ^ (key &* 0x9E37_79B9_7F4A_7C15)) &* 0xBF58_476D_1CE4_E5B9
    x ^= UInt64(run) &* 0xC2B2_AE3D_27D4_EB4F
    x = (x ^ (x >> 29)) &* 0x94D0_49BB_1331_11EB
    return x ^ (x >> 32)
}
