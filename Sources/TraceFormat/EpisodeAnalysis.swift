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
/// One pass over the trace, together with burst detection. Records of one
/// episode are found through an 8-entry cache in front of a dictionary, so
/// the usual run of consecutive records costs no hashing.
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

    /// Episodes with a root, in order of their first record.
    public var episodes: [Episode]
    public var orphanEpisodes: Int
    public var orphanRecords: UInt64
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

    /// Analyses `reader`; `topSequences` bounds `sequences`.
    public init(_ reader: TraceReader, window: UInt64 = 1_000_000, threshold: BurstThreshold = .meanMultiple(3),
                topSequences: Int = 10) {
        var pass = Pass(window: window, records: reader.recordCount)
        var i = 0
        reader.forEach { r in
            pass.add(r, index: i)
            i &+= 1
        }
        pass.flush()
        var rooted = pass.episodes   // unique: compacted in place
        pass.episodes = []
        var orphans = 0, orphanRecords: UInt64 = 0, inEpisodes: UInt64 = 0
        var mult = DurationHistogram(), time = DurationHistogram()
        // Sequence hash -> (episodes, representative index in `rooted`).
        var bySequence: [UInt64: (count: Int, rep: Int)] = [:]
        var kept = 0
        rooted.withUnsafeMutableBufferPointer { b in
            for j in b.indices {
                var e = b[j]
                guard e.hasRoot else {
                    orphans += 1
                    orphanRecords += UInt64(e.records)
                    continue
                }
                if e.runLength > 0 { e.sequenceHash = mix(e.sequenceHash, e.runKey, e.runLength) }
                inEpisodes += UInt64(e.exits)
                mult.add(e.exits)
                time.add(TraceRecord.clampDuration(e.time))
                // Sequences only when asked for: the dictionary costs a hash per episode.
                if topSequences > 0 { bySequence[e.sequenceHash, default: (0, kept)].count += 1 }
                b[kept] = e
                kept += 1
            }
        }
        rooted.removeLast(rooted.count - kept)
        let top = bySequence.values.sorted {
            ($0.count, rooted[$0.rep].exits, rooted[$1.rep].id) > ($1.count, rooted[$1.rep].exits, rooted[$0.rep].id)
        }.prefix(max(0, topSequences))
        sequences = top.map { t in
            let e = rooted[t.rep]
            return ExitSequence(steps: EpisodeAnalysis.steps(of: e, in: reader), episodes: t.count, exits: Int(e.exits))
        }
        // Equal counts: order by the rendered text, so the output is stable.
        sequences.sort { ($0.episodes, $0.exits) != ($1.episodes, $1.exits)
            ? ($0.episodes, $0.exits) > ($1.episodes, $1.exits) : $0.text < $1.text }
        episodes = rooted
        orphanEpisodes = orphans
        self.orphanRecords = orphanRecords
        reflectedWithoutEpisode = pass.reflectedWithoutEpisode
        totalExits = pass.exits
        exitsInEpisodes = inEpisodes
        multiplication = mult
        self.time = time
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

    /// One entry per root (level, reason), in level and reason order.
    public func roots(blocks: Int = 1) -> [RootStats] {
        let k = max(1, blocks), nb = DurationBuckets.count
        let stride = 2 * k * nb   // per root: the blocks of exits per episode, then of episode time
        var keys: [UInt64] = []   // level << 40 | reason key, in order of appearance
        var index: [UInt64: Int] = [:]
        // Local arrays, updated inline: no per-episode closure, box or exclusivity check.
        var dense: [UInt64] = [], count: [UInt64] = []
        var sums: [UInt64] = [], mins: [UInt32] = [], maxes: [UInt32] = [], squares: [Double] = []   // 2 per root
        var lastKey = UInt64.max, last = 0
        for e in episodes {
            let key = UInt64(e.rootLevel) << 40 | e.rootReason.key
            if key != lastKey {
                // Few roots as a rule: a linear scan before the dictionary.
                if let j = keys.firstIndex(of: key) ?? (keys.count > 16 ? index[key] : nil) {
                    last = j
                } else {
                    last = keys.count
                    keys.append(key)
                    index[key] = last
                    dense.append(contentsOf: repeatElement(0, count: stride))
                    count.append(0)
                    sums += [0, 0]; mins += [.max, .max]; maxes += [0, 0]; squares += [0, 0]
                }
                lastKey = key
            }
            let block = recordCount == 0 ? 0 : min(k - 1, e.firstRecord * k / recordCount)
            let m = e.exits, t = TraceRecord.clampDuration(e.time)
            let base = last * stride + block * nb, s = 2 * last
            count[last] &+= 1
            dense[base + DurationBuckets.bucket(m)] &+= 1
            dense[base + k * nb + DurationBuckets.bucket(t)] &+= 1
            sums[s] &+= UInt64(m); sums[s + 1] &+= UInt64(t)
            if m < mins[s] { mins[s] = m }
            if t < mins[s + 1] { mins[s + 1] = t }
            if m > maxes[s] { maxes[s] = m }
            if t > maxes[s + 1] { maxes[s + 1] = t }
            squares[s] += Double(m) * Double(m)
            squares[s + 1] += Double(t) * Double(t)
        }
        func measure(_ i: Int, _ m: Int) -> (DurationHistogram, BlockHistograms) {
            let base = i * stride + m * k * nb
            let perBlock = dense[base..<(base + k * nb)]
            var merged = [UInt64](repeating: 0, count: nb)
            for b in 0..<k { for j in 0..<nb { merged[j] &+= perBlock[base + b * nb + j] } }
            let s = 2 * i + m
            return (DurationHistogram(buckets: merged, count: count[i], sum: sums[s], max: maxes[s], min: mins[s],
                                      sumSquares: squares[s]),
                    BlockHistograms(blocks: k, dense: perBlock, min: mins[s], max: maxes[s]))
        }
        return keys.indices.sorted { keys[$0] < keys[$1] }.map { i in
            let (mult, multBlocks) = measure(i, 0), (time, timeBlocks) = measure(i, 1)
            return RootStats(level: UInt8(truncatingIfNeeded: keys[i] >> 40), reason: ExitReason(key: keys[i] & ((1 << 40) - 1)),
                             episodes: Int(count[i]), exits: mult.sum, multiplication: mult, time: time,
                             multiplicationBlocks: multBlocks, timeBlocks: timeBlocks)
        }
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

    /// The `n` episodes with the most exits (ties: longer time, then lower id).
    public func worst(_ n: Int) -> [Episode] {
        var top: [Episode] = []
        func before(_ a: Episode, _ b: Episode) -> Bool {
            (a.exits, a.time, b.id) > (b.exits, b.time, a.id)
        }
        for e in episodes where n > 0 {
            if top.count == n {
                guard before(e, top[n - 1]) else { continue }
                top.removeLast()
            }
            let at = top.firstIndex { before(e, $0) } ?? top.count
            top.insert(e, at: at)
        }
        return top
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

/// The single pass's state. The episode being added to lives in `cur`
/// (registers, not the array) until a record of another episode arrives.
/// Episode ids below `denseLimit` find their slot through an array, others
/// through a dictionary.
private struct Pass {
    typealias Episode = EpisodeAnalysis.Episode
    var episodes: [Episode] = []
    var dense: [Int32] = []
    let denseLimit: UInt64
    var sparse: [UInt64: Int] = [:]
    var cur = Episode(id: 0, firstRecord: 0, lastRecord: 0, start: 0, end: 0)
    var curSlot = -1
    var bursts: BurstDetector
    var exits: UInt64 = 0
    var records: UInt64 = 0
    var reflectedWithoutEpisode: UInt64 = 0
    var minTime = UInt64.max
    var maxTime: UInt64 = 0

    init(window: UInt64, records: Int) {
        bursts = BurstDetector(window: window)
        denseLimit = UInt64(min(1 << 26, 2 * records + 1024))
        episodes.reserveCapacity(records / 4 + 16)   // address space only until touched
    }

    @inline(__always)
    mutating func add(_ r: TraceRecord, index i: Int) {
        records &+= 1
        if r.timestamp < minTime { minTime = r.timestamp }
        if r.timestamp > maxTime { maxTime = r.timestamp }
        let isExit = !r.kind.isEvent
        if isExit {
            exits &+= 1
            bursts.add(r.timestamp)
        }
        let id = r.episode
        let isRoot = r.handler == .reflected && r.level >= 2
        if id == 0 {
            if isRoot { reflectedWithoutEpisode &+= 1 }
            return
        }
        if id != cur.id || curSlot < 0 { switchTo(id, first: i, timestamp: r.timestamp) }
        if r.timestamp < cur.start { cur.start = r.timestamp }
        let end = saturatingAdd(r.timestamp, UInt64(r.duration))
        if end > cur.end { cur.end = end }
        cur.lastRecord = i
        cur.records &+= 1
        if isRoot && !cur.hasRoot {
            cur.hasRoot = true
            cur.rootLevel = r.level
            cur.rootReason = ExitReason(r)
            cur.vcpu = r.vcpu
        }
        guard isExit else { return }
        cur.exits &+= 1
        let key = ExitReason(r).key
        if key == cur.runKey {
            cur.runLength &+= 1
        } else {
            if cur.runLength > 0 { cur.sequenceHash = mix(cur.sequenceHash, cur.runKey, cur.runLength) }
            cur.runKey = key
            cur.runLength = 1
        }
    }

    /// Stores `cur` back in its slot.
    mutating func flush() {
        if curSlot >= 0 { episodes[curSlot] = cur }
    }

    @inline(never)
    mutating func switchTo(_ id: UInt64, first: Int, timestamp: UInt64) {
        flush()
        var slot = -1
        if id < denseLimit {
            let i = Int(id)
            if i >= dense.count { dense.append(contentsOf: repeatElement(-1, count: max(i + 1 - dense.count, dense.count))) }
            if dense[i] >= 0 { slot = Int(dense[i]) } else { dense[i] = Int32(episodes.count) }
        } else if let s = sparse[id] {
            slot = s
        } else {
            sparse[id] = episodes.count
        }
        if slot < 0 {
            slot = episodes.count
            episodes.append(Episode(id: id, firstRecord: first, lastRecord: first, start: timestamp, end: timestamp))
        }
        curSlot = slot
        cur = episodes[slot]
    }
}

