/// The single pass behind `EpisodeAnalysis`, in bounded memory.
///
/// Open episodes live in `open` (at most `openLimit`), found by id through
/// `OpenIndex`; the episode being added to lives in `cur` (registers, not
/// the array) until a record of another episode arrives. When a new episode
/// finds the table full, the half of the open episodes least recently seen
/// are closed: folded into the aggregates and their ids marked closed (a bit
/// per id below `denseLimit`, a set above it). Memory is then the open table,
/// the closed-id bits (at most 2^26 bits), the distinct sequences and, only
/// with `keep`, the episodes themselves.
struct EpisodePass {
    typealias Episode = EpisodeAnalysis.Episode
    /// Open episodes at most: 65,536 of about 100 bytes.
    static let openLimit = 1 << 16

    /// The open episodes, their ids and last records (`OpenEpisodes`).
    let open = OpenEpisodes(capacity: EpisodePass.openLimit)
    var index = OpenIndex(capacity: 2 * EpisodePass.openLimit)
    var closedBits: [UInt64] = []
    var closedSparse: Set<UInt64> = []
    let denseLimit: UInt64
    var cur = Episode(id: 0, firstRecord: 0, lastRecord: 0, start: 0, end: 0)
    var curSlot = -1
    /// The largest id met so far: a larger one is neither open nor closed,
    /// so a new episode (ids as a rule grow through the file) needs no lookup.
    var maxID: UInt64 = 0
    /// False while every episode was opened with an id above all before it:
    /// then `open` is in id order and `find` searches its ids, and `index`
    /// is left empty. Set, and the index built, at the first id out of order.
    var indexed = false
    /// The episode current before `cur` (slot -1: none), found without a lookup.
    var recentID: UInt64 = 0
    var recentSlot = -1

    var bursts: BurstDetector
    var exits: UInt64 = 0
    var records: UInt64 = 0
    var reflectedWithoutEpisode: UInt64 = 0
    var minTime = UInt64.max
    var maxTime: UInt64 = 0
    var lateRecords: UInt64 = 0

    // Aggregates of closed episodes.
    var rooted = 0
    var orphans = 0
    var orphanRecords: UInt64 = 0
    var exitsInEpisodes: UInt64 = 0
    var multiplication = DurationHistogram()
    var time = DurationHistogram()
    var roots: RootAccumulator
    var worst: TopEpisodes
    let countSequences: Bool
    /// Distinct sequences: hash -> position in `sequenceCounts` (episodes
    /// with it) and `sequenceReps` (the one with the lowest id).
    var sequenceIndex = SequenceIndex()
    var sequenceCounts: [Int] = []
    var sequenceReps: [Episode] = []
    let keep: Bool
    var kept: [Episode] = []

    init(window: UInt64, records: Int, blocks: Int, worst: Int, sequences: Bool, keep: Bool) {
        bursts = BurstDetector(window: window)
        denseLimit = UInt64(min(1 << 26, 2 * records + 1024))
        roots = RootAccumulator(blocks: blocks, recordCount: records)
        self.worst = TopEpisodes(limit: worst)
        countSequences = sequences
        self.keep = keep
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
        if id != cur.id || curSlot < 0 {
            guard switchTo(id, first: i, timestamp: r.timestamp) else {
                lateRecords &+= 1
                return
            }
        }
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
        if curSlot >= 0 {
            open.episodes[curSlot] = cur
            open.last[curSlot] = cur.lastRecord
        }
    }

    /// Closes every open episode; the aggregates are then complete.
    mutating func finish() {
        flush()
        curSlot = -1
        for j in 0..<open.count { close(open.episodes[j]) }
        open.count = 0
        index.removeAll()
    }

    /// Makes episode `id` current: an open one, or a new one. False when
    /// `id` was closed already.
    @inline(never)
    mutating func switchTo(_ id: UInt64, first: Int, timestamp: UInt64) -> Bool {
        flush()
        let previousID = cur.id, previousSlot = curSlot
        if id > maxID {
            maxID = id
        } else {
            let slot = id == recentID && recentSlot >= 0 ? recentSlot : find(id)
            if slot >= 0 {
                recentID = previousID
                recentSlot = previousSlot
                curSlot = slot
                cur = open.episodes[slot]
                return true
            }
            if isClosed(id) {
                recentID = previousID
                recentSlot = previousSlot
                curSlot = -1
                return false
            }
            // A new id below an earlier one: the open table is no longer in id order.
            if !indexed {
                for j in 0..<open.count { index.insert(open.ids[j], slot: j) }
                indexed = true
            }
        }
        if open.count == EpisodePass.openLimit {
            closeLeastRecent(now: first)
            recentSlot = -1   // slots moved
        } else {
            recentID = previousID
            recentSlot = previousSlot
        }
        curSlot = open.count
        cur = Episode(id: id, firstRecord: first, lastRecord: first, start: timestamp, end: timestamp)
        (open.episodes + curSlot).initialize(to: cur)
        open.ids[curSlot] = id
        open.last[curSlot] = first
        open.count += 1
        if indexed { index.insert(id, slot: curSlot) }
        return true
    }

    /// The slot of open episode `id`, or -1: through the index, or while
    /// the open table is in id order by binary search of its ids.
    private func find(_ id: UInt64) -> Int {
        if indexed { return index.find(id) ?? -1 }
        let ids = open.ids
        var lo = 0, hi = open.count
        while lo < hi {
            let mid = (lo &+ hi) >> 1
            if ids[mid] < id { lo = mid &+ 1 } else { hi = mid }
        }
        return lo < open.count && ids[lo] == id ? lo : -1
    }

    private func isClosed(_ id: UInt64) -> Bool {
        if id < denseLimit {
            let word = Int(id >> 6)
            return word < closedBits.count && closedBits[word] & (1 << (id & 63)) != 0
        }
        return closedSparse.contains(id)
    }

    private mutating func markClosed(_ id: UInt64) {
        if id < denseLimit {
            let word = Int(id >> 6)
            if word >= closedBits.count {
                closedBits.append(contentsOf: repeatElement(0, count: max(word + 1 - closedBits.count, closedBits.count)))
            }
            closedBits[word] |= 1 << (id & 63)
        } else {
            closedSparse.insert(id)
        }
    }

    /// Closes at least half of the open episodes, those whose last record
    /// is oldest: the cut is found with 256 buckets of record index between
    /// the oldest last record and `now` (last records are distinct, as every
    /// record belongs to one episode).
    private mutating func closeLeastRecent(now: Int) {
        let n = open.count
        let episodes = open.episodes, ids = open.ids, lasts = open.last
        var oldest = now
        for j in 0..<n where lasts[j] < oldest { oldest = lasts[j] }
        let span = now - oldest + 1
        func bucket(_ last: Int) -> Int { (last - oldest) * 256 / span }
        var counts = [Int](repeating: 0, count: 256)
        for j in 0..<n { counts[bucket(lasts[j])] += 1 }
        var cut = 0, sum = 0
        while cut < 256 {
            sum += counts[cut]
            cut += 1
            if 2 * sum >= n { break }
        }
        var kept = 0
        if indexed { index.removeAll() }
        for j in 0..<n {
            if bucket(lasts[j]) < cut {
                close(episodes[j])
            } else {
                if kept != j {
                    episodes[kept] = episodes[j]
                    ids[kept] = ids[j]
                    lasts[kept] = lasts[j]
                }
                if indexed { index.insert(ids[kept], slot: kept) }
                kept += 1
            }
        }
        open.count = kept
    }

    /// Folds a finished episode into the aggregates.
    private mutating func close(_ episode: Episode) {
        markClosed(episode.id)
        var e = episode
        guard e.hasRoot else {
            orphans += 1
            orphanRecords += UInt64(e.records)
            return
        }
        if e.runLength > 0 { e.sequenceHash = mix(e.sequenceHash, e.runKey, e.runLength) }
        rooted += 1
        exitsInEpisodes += UInt64(e.exits)
        multiplication.add(e.exits)
        time.add(TraceRecord.clampDuration(e.time))
        roots.add(e)
        worst.add(e)
        if countSequences {
            if let i = sequenceIndex.find(e.sequenceHash) {
                sequenceCounts[i] += 1
                if e.id < sequenceReps[i].id { sequenceReps[i] = e }
            } else {
                sequenceIndex.insert(e.sequenceHash, sequenceReps.count)
                sequenceCounts.append(1)
                sequenceReps.append(e)
            }
        }
        if keep { kept.append(e) }
    }
}

/// The open episodes in raw memory of fixed capacity (no uniqueness or
/// bounds checks on the per-episode path): each episode, and beside it its
/// id and last record, compact for the lookups and for the cut of
/// `closeLeastRecent`. `Episode` holds only plain values.
final class OpenEpisodes {
    let episodes: UnsafeMutablePointer<EpisodeAnalysis.Episode>
    let ids: UnsafeMutablePointer<UInt64>
    let last: UnsafeMutablePointer<Int>
    var count = 0

    init(capacity: Int) {
        episodes = .allocate(capacity: capacity)
        ids = .allocate(capacity: capacity)
        last = .allocate(capacity: capacity)
    }

    deinit {
        episodes.deallocate()
        ids.deallocate()
        last.deallocate()
    }
}

/// Id -> slot of the open episodes: open addressing with linear probing, no
/// deletion (the pass rebuilds it whenever it closes episodes). Id 0 marks
/// an empty entry; episode id 0 is never an episode.
struct OpenIndex {
    private var keys: [UInt64]
    private var slots: [Int32]
    private let mask: Int

    /// `capacity` must be a power of two, at least twice the entries held.
    init(capacity: Int) {
        keys = [UInt64](repeating: 0, count: capacity)
        slots = [Int32](repeating: 0, count: capacity)
        mask = capacity - 1
    }

    @inline(__always)
    private func start(_ id: UInt64) -> Int { Int(truncatingIfNeeded: (id &* 0x9E37_79B9_7F4A_7C15) >> 40) & mask }

    func find(_ id: UInt64) -> Int? {
        var i = start(id)
        while true {
            let k = keys[i]
            if k == id { return Int(slots[i]) }
            if k == 0 { return nil }
            i = (i &+ 1) & mask
        }
    }

    mutating func insert(_ id: UInt64, slot: Int) {
        var i = start(id)
        while keys[i] != 0 && keys[i] != id { i = (i &+ 1) & mask }
        keys[i] = id
        slots[i] = Int32(slot)
    }

    mutating func removeAll() {
        keys.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }
}

/// Sequence hash -> position of the distinct sequences: open addressing
/// with linear probing over the hash itself (already mixed, `mix`), grown
/// at half full; cheaper than a Dictionary, which hashes the hash again.
struct SequenceIndex {
    private var keys = [UInt64](repeating: 0, count: 1024)
    private var values = [Int32](repeating: -1, count: 1024)   // -1: empty
    private var count = 0

    @inline(__always)
    func find(_ hash: UInt64) -> Int? {
        let mask = keys.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while true {
            let v = values[i]
            if v < 0 { return nil }
            if keys[i] == hash { return Int(v) }
            i = (i &+ 1) & mask
        }
    }

    /// Adds `hash`, which is not in the index.
    mutating func insert(_ hash: UInt64, _ value: Int) {
        if 2 * (count + 1) > keys.count {
            let oldKeys = keys, oldValues = values
            keys = [UInt64](repeating: 0, count: 2 * oldKeys.count)
            values = [Int32](repeating: -1, count: 2 * oldKeys.count)
            count = 0
            for j in oldKeys.indices where oldValues[j] >= 0 { insert(oldKeys[j], Int(oldValues[j])) }
        }
        let mask = keys.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while values[i] >= 0 { i = (i &+ 1) & mask }
        keys[i] = hash
        values[i] = Int32(value)
        count += 1
    }
}

/// The `limit` episodes with the most exits (ties: longer time, then lower id), best first.
struct TopEpisodes {
    let limit: Int
    var episodes: [EpisodeAnalysis.Episode] = []

    static func before(_ a: EpisodeAnalysis.Episode, _ b: EpisodeAnalysis.Episode) -> Bool {
        (a.exits, a.time, b.id) > (b.exits, b.time, a.id)
    }

    mutating func add(_ e: EpisodeAnalysis.Episode) {
        guard limit > 0 else { return }
        if episodes.count == limit {
            guard TopEpisodes.before(e, episodes[limit - 1]) else { return }
            episodes.removeLast()
        }
        let at = episodes.firstIndex { TopEpisodes.before(e, $0) } ?? episodes.count
        episodes.insert(e, at: at)
    }
}

/// Per root (level, reason): exits per episode and episode time, whole and
/// in `blocks` consecutive parts of the trace by the episode's first record
/// (for the block bootstrap of `compare`). Flat arrays updated inline: no
/// per-episode closure, box or exclusivity check.
struct RootAccumulator {
    let k: Int
    let recordCount: Int
    private let stride: Int
    private var keys: [UInt64] = []   // level << 40 | reason key, in order of appearance
    private var index: [UInt64: Int] = [:]
    private var dense: [UInt64] = []
    /// Per root, [0] for exits per episode and [1] for episode time.
    private struct Figures {
        var count: UInt64 = 0
        var sums: (UInt64, UInt64) = (0, 0)
        var mins: (UInt32, UInt32) = (.max, .max)
        var maxes: (UInt32, UInt32) = (0, 0)
        var squares: (Double, Double) = (0, 0)
    }
    private var figures: [Figures] = []
    private var lastKey = UInt64.max, last = 0

    init(blocks: Int, recordCount: Int) {
        k = max(1, blocks)
        self.recordCount = recordCount
        stride = 2 * k * DurationBuckets.count   // per root: the blocks of exits per episode, then of episode time
    }

    mutating func add(_ e: EpisodeAnalysis.Episode) {
        let nb = DurationBuckets.count
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
                figures.append(Figures())
            }
            lastKey = key
        }
        let block = recordCount == 0 ? 0 : min(k - 1, e.firstRecord * k / recordCount)
        let m = e.exits, t = TraceRecord.clampDuration(e.time)
        let base = last &* stride &+ block &* nb, second = k &* nb
        dense.withUnsafeMutableBufferPointer { d in
            d[base &+ DurationBuckets.bucket(m)] &+= 1
            d[base &+ second &+ DurationBuckets.bucket(t)] &+= 1
        }
        figures.withUnsafeMutableBufferPointer { f in
            let r = f.baseAddress! + last
            r.pointee.count &+= 1
            r.pointee.sums.0 &+= UInt64(m); r.pointee.sums.1 &+= UInt64(t)
            if m < r.pointee.mins.0 { r.pointee.mins.0 = m }
            if t < r.pointee.mins.1 { r.pointee.mins.1 = t }
            if m > r.pointee.maxes.0 { r.pointee.maxes.0 = m }
            if t > r.pointee.maxes.1 { r.pointee.maxes.1 = t }
            r.pointee.squares.0 += Double(m) * Double(m)
            r.pointee.squares.1 += Double(t) * Double(t)
        }
    }

    func result() -> [EpisodeAnalysis.RootStats] {
        let nb = DurationBuckets.count
        func measure(_ i: Int, _ m: Int) -> (DurationHistogram, BlockHistograms) {
            let base = i * stride + m * k * nb
            let perBlock = dense[base..<(base + k * nb)]
            var merged = [UInt64](repeating: 0, count: nb)
            for b in 0..<k { for j in 0..<nb { merged[j] &+= perBlock[base + b * nb + j] } }
            let f = figures[i]
            let sum = m == 0 ? f.sums.0 : f.sums.1, lo = m == 0 ? f.mins.0 : f.mins.1
            let hi = m == 0 ? f.maxes.0 : f.maxes.1, squares = m == 0 ? f.squares.0 : f.squares.1
            return (DurationHistogram(buckets: merged, count: f.count, sum: sum, max: hi, min: lo, sumSquares: squares),
                    BlockHistograms(blocks: k, dense: perBlock, min: lo, max: hi))
        }
        return keys.indices.sorted { keys[$0] < keys[$1] }.map { i in
            let (mult, multBlocks) = measure(i, 0), (time, timeBlocks) = measure(i, 1)
            return EpisodeAnalysis.RootStats(
                level: UInt8(truncatingIfNeeded: keys[i] >> 40), reason: ExitReason(key: keys[i] & ((1 << 40) - 1)),
                episodes: Int(figures[i].count), exits: mult.sum, multiplication: mult, time: time,
                multiplicationBlocks: multBlocks, timeBlocks: timeBlocks)
        }
    }
}
