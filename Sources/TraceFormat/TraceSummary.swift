/// Per-group and per-level statistics of a trace, computed in one pass.
public struct TraceSummary: Sendable {
    /// Records sharing (level, reason, handler). The reason is the VMX exit
    /// reason when a record has one, otherwise its kind (see `ExitReason`).
    public struct Group: Sendable, Equatable {
        public var level: UInt8
        public var reason: ExitReason
        public var handler: Handler
        public var count: UInt64
        /// Fraction (0...1) of all records in the trace.
        public var share: Double
        /// Records with the unclaimed flag.
        public var unclaimed: UInt64
        public var histogram: DurationHistogram

        /// Sum of durations, ns.
        public var totalDuration: UInt64 { histogram.sum }
        public var meanDuration: Double { histogram.mean }
        /// Percentiles are histogram bucket upper bounds (within 6.25%), capped at max.
        public var p50: UInt64 { histogram.percentile(0.50) }
        public var p90: UInt64 { histogram.percentile(0.90) }
        public var p99: UInt64 { histogram.percentile(0.99) }
        /// Exact maximum duration, ns.
        public var maxDuration: UInt32 { histogram.max }
        /// Exact minimum duration, ns.
        public var minDuration: UInt32 { histogram.minimum }
        /// Population standard deviation of the durations, ns.
        public var standardDeviation: Double { histogram.standardDeviation }
    }

    public struct Level: Sendable, Equatable {
        public var level: UInt8
        /// All records at this level, events included.
        public var records: UInt64
        /// Records that are exits (interrupt-injected events excluded).
        public var exits: UInt64
        /// exits / run duration; nil when the run duration is 0.
        public var exitsPerSecond: Double?
    }

    public var recordCount: UInt64
    /// Smallest and largest timestamp (records need not be in time order across vCPUs).
    public var firstTimestamp: UInt64?
    public var lastTimestamp: UInt64?
    /// lastTimestamp - firstTimestamp, ns (0 for fewer than two records).
    public var runDuration: UInt64
    /// Sorted by level, reason, handler.
    public var groups: [Group]
    /// Sorted by level; only levels that occur.
    public var levels: [Level]
    /// Total records with the unclaimed flag.
    public var unclaimed: UInt64
    /// With `blocks` > 1: each group's durations in `blocks` consecutive runs
    /// of records of (nearly) equal size, aligned with `groups`, the input
    /// of the block bootstrap in `TraceComparison`. Empty otherwise.
    public var groupBlocks: [BlockHistograms] = []

    /// Summarises every record of `reader`; with `blocks` > 1 it also keeps
    /// the per-block histograms (`groupBlocks`).
    public init(_ reader: TraceReader, blocks: Int = 1) {
        let k = max(1, blocks)
        var acc = Accumulator(blocks: k)
        let n = reader.recordCount
        // Block b holds records [b·n/k, (b+1)·n/k).
        for b in 0..<k {
            let lo = b * n / k, hi = (b + 1) * n / k
            acc.scan(reader.records + lo * TraceLayout.recordSize, count: hi - lo, block: b)
        }
        self = acc.finish()
    }

    /// Summarises an in-memory sequence of records.
    public init<S: Sequence>(records: S) where S.Element == TraceRecord {
        var acc = Accumulator(blocks: 1)
        for r in records { acc.add(r, block: 0) }
        self = acc.finish()
    }

    fileprivate init(recordCount: UInt64, firstTimestamp: UInt64?, lastTimestamp: UInt64?,
                     groups: [Group], levels: [Level], unclaimed: UInt64) {
        self.recordCount = recordCount
        self.firstTimestamp = firstTimestamp
        self.lastTimestamp = lastTimestamp
        if let firstTimestamp, let lastTimestamp {
            runDuration = lastTimestamp - firstTimestamp
        } else {
            runDuration = 0
        }
        self.groups = groups
        self.levels = levels
        self.unclaimed = unclaimed
    }

    /// Several runs of one workload as one summary: counts, histograms and
    /// levels added up, and `groupBlocks` (when every run has them, with
    /// `blocksPerRun` blocks each) laid out run after run, so that the
    /// bootstrap can draw runs and then blocks. One run is returned as it is.
    public static func merging(_ runs: [TraceSummary], blocksPerRun: Int) -> TraceSummary {
        if runs.count == 1 { return runs[0] }
        struct Key: Hashable, Comparable {
            var level: UInt8, reason: UInt64, handler: UInt8
            static func < (x: Key, y: Key) -> Bool { (x.level, x.reason, x.handler) < (y.level, y.reason, y.handler) }
        }
        var merged: [Key: (group: Group, parts: [BlockHistograms?])] = [:]
        var levels: [UInt8: Level] = [:]
        let total = runs.reduce(0) { $0 + $1.recordCount }
        for (r, s) in runs.enumerated() {
            let blocks = s.groupBlocks.count == s.groups.count ? s.groupBlocks : nil
            for (i, g) in s.groups.enumerated() {
                let key = Key(level: g.level, reason: g.reason.key, handler: g.handler.rawValue)
                var entry = merged[key] ?? (Group(level: g.level, reason: g.reason, handler: g.handler, count: 0, share: 0,
                                                   unclaimed: 0, histogram: DurationHistogram()),
                                             [BlockHistograms?](repeating: nil, count: runs.count))
                entry.group.count += g.count
                entry.group.unclaimed += g.unclaimed
                entry.group.histogram.merge(g.histogram)
                entry.parts[r] = blocks?[i]
                merged[key] = entry
            }
            for l in s.levels {
                var m = levels[l.level] ?? Level(level: l.level, records: 0, exits: 0, exitsPerSecond: nil)
                m.records += l.records
                m.exits += l.exits
                levels[l.level] = m
            }
        }
        let keys = merged.keys.sorted()
        var out = TraceSummary(recordCount: total, firstTimestamp: runs.compactMap(\.firstTimestamp).min(),
                               lastTimestamp: runs.compactMap(\.lastTimestamp).max(),
                               groups: keys.map { k in
                                   var g = merged[k]!.group
                                   g.share = total == 0 ? 0 : Double(g.count) / Double(total)
                                   return g
                               },
                               levels: levels.keys.sorted().map { levels[$0]! },
                               unclaimed: runs.reduce(0) { $0 + $1.unclaimed })
        if runs.allSatisfy({ $0.groupBlocks.count == $0.groups.count && !$0.groupBlocks.isEmpty || $0.groups.isEmpty }) {
            out.groupBlocks = keys.map { BlockHistograms.runs(merged[$0]!.parts, blocksPerRun: blocksPerRun) }
        }
        return out
    }

    /// The group for (level, reason, handler), if any record had it.
    public func group(level: UInt8, reason: ExitReason, handler: Handler = .l0) -> Group? {
        groups.first { $0.level == level && $0.reason == reason && $0.handler == handler }
    }

    /// The group of records with this kind and no VMX reason.
    public func group(level: UInt8, kind: ExitKind, handler: Handler = .l0) -> Group? {
        group(level: level, reason: .kind(kind), handler: handler)
    }

    /// Exits (events excluded) and handling time per level, in level order.
    public var levelTotals: [(level: UInt8, exits: UInt64, time: UInt64)] {
        levels.map { l in
            let gs = groups.filter { $0.level == l.level && !($0.reason.kind?.isEvent ?? false) }
            return (l.level, l.exits, gs.reduce(0) { $0 &+ $1.totalDuration })
        }
    }
}

/// The one-pass state. Groups are found through a flat slot table indexed by
/// level<<10 | reason<<1 | handler, where reason is the kind (0-255) or 256 +
/// the VMX reason (below 256), and handlers 0 and 1; so the common path does
/// no hashing. Other handler bytes and VMX reasons only occur in odd files and
/// use a dictionary. The tables are raw memory owned by the accumulator (freed
/// by `finish`), so that the scan does no uniqueness or bounds checks.
private struct Accumulator {
    struct OtherKey: Hashable { var level: UInt8; var reason: UInt64; var handler: UInt8 }
    /// A group's figures but its histogram (in `buckets`), together in one cache line.
    struct Stats {
        var sum: UInt64 = 0
        var squares: Double = 0
        var unclaimed: UInt64 = 0
        var max: UInt32 = 0
        var min: UInt32 = .max
    }
    static let slotCount = 256 * 1024
    static let nb = DurationBuckets.count

    let slots: UnsafeMutablePointer<Int32>
    var otherSlots: [OtherKey: Int32] = [:]
    var keys: [(level: UInt8, reason: UInt64, handler: UInt8)] = []
    let blocks: Int
    /// Room for `capacity` groups: keys.count × blocks × nb bucket counts, and the stats.
    var capacity = 0
    var buckets: UnsafeMutablePointer<UInt64>
    var stats: UnsafeMutablePointer<Stats>
    /// Records and exits (interrupt-injected events excluded) per level, 256 each.
    let levelRecords: UnsafeMutablePointer<UInt64>
    let levelExits: UnsafeMutablePointer<UInt64>
    var total: UInt64 = 0
    var minTime = UInt64.max
    var maxTime: UInt64 = 0

    init(blocks: Int) {
        self.blocks = blocks
        slots = .allocate(capacity: Self.slotCount)
        slots.initialize(repeating: -1, count: Self.slotCount)
        levelRecords = .allocate(capacity: 512)
        levelRecords.initialize(repeating: 0, count: 512)
        levelExits = levelRecords + 256
        buckets = .allocate(capacity: 0)
        stats = .allocate(capacity: 0)
    }

    /// Adds the `count` records at `base` (file layout, Traces/README.md "Record") to block `block`.
    mutating func scan(_ base: UnsafeRawPointer, count: Int, block: Int) {
        let slots = self.slots, levelRecords = self.levelRecords, levelExits = self.levelExits
        var buckets = self.buckets, stats = self.stats
        let stride = blocks &* Self.nb, offset = block &* Self.nb
        var minTime = self.minTime, maxTime = self.maxTime
        var p = base
        let end = base + count &* TraceLayout.recordSize
        while p < end {
            let t = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            let d = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            let level = p.load(fromByteOffset: 12, as: UInt8.self)
            let kind = p.load(fromByteOffset: 13, as: UInt8.self)
            let vmx = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 48, as: UInt32.self))
            let handler = p.load(fromByteOffset: 52, as: UInt8.self)
            let flags = p.load(fromByteOffset: 54, as: UInt8.self)
            p += TraceLayout.recordSize

            let reasonSlot = vmx == TraceRecord.noVMXReason ? Int(kind) : 256 &+ Int(vmx)
            var g: Int
            if handler <= 1 && reasonSlot < 512, case let v = slots[Int(level) << 10 | reasonSlot << 1 | Int(handler)], v >= 0 {
                g = Int(v)
            } else {
                g = groupIndex(level, kind, vmx, handler)
                buckets = self.buckets
                stats = self.stats
            }
            buckets[g &* stride &+ offset &+ DurationBuckets.bucket(d)] &+= 1
            let s = stats + g
            s.pointee.sum &+= UInt64(d)
            if d > s.pointee.max { s.pointee.max = d }
            if d < s.pointee.min { s.pointee.min = d }
            let x = Double(d)
            s.pointee.squares += x * x
            s.pointee.unclaimed &+= UInt64(flags & RecordFlags.unclaimed.rawValue)
            levelRecords[Int(level)] &+= 1
            if !ExitKind(rawValue: kind).isEvent { levelExits[Int(level)] &+= 1 }
            if t < minTime { minTime = t }
            if t > maxTime { maxTime = t }
        }
        total &+= UInt64(count)
        self.minTime = minTime
        self.maxTime = maxTime
    }

    /// Adds one record to block `block` (the in-memory path).
    mutating func add(_ r: TraceRecord, block: Int) {
        withUnsafeTemporaryAllocation(byteCount: TraceLayout.recordSize, alignment: 8) { b in
            r.encode(to: b.baseAddress!)
            scan(UnsafeRawPointer(b.baseAddress!), count: 1, block: block)
        }
    }

    /// The group of (level, kind, VMX reason, handler), made on first use.
    @inline(never)
    mutating func groupIndex(_ level: UInt8, _ kind: UInt8, _ vmx: UInt32, _ handler: UInt8) -> Int {
        let reasonSlot = vmx == TraceRecord.noVMXReason ? Int(kind) : 256 &+ Int(vmx)
        if handler <= 1 && reasonSlot < 512 {
            let s = Int(level) << 10 | reasonSlot << 1 | Int(handler)
            let g = slots[s]
            if g >= 0 { return Int(g) }
            let new = newGroup(level, vmx, kind, handler)
            slots[s] = Int32(new)
            return new
        }
        let reason = vmx == TraceRecord.noVMXReason ? UInt64(kind) : (1 << 32 | UInt64(vmx))
        let key = OtherKey(level: level, reason: reason, handler: handler)
        if let g = otherSlots[key] { return Int(g) }
        let new = newGroup(level, vmx, kind, handler)
        otherSlots[key] = Int32(new)
        return new
    }

    mutating func newGroup(_ level: UInt8, _ vmx: UInt32, _ kind: UInt8, _ handler: UInt8) -> Int {
        let reason = vmx == TraceRecord.noVMXReason ? UInt64(kind) : (1 << 32 | UInt64(vmx))
        let g = keys.count
        keys.append((level, reason, handler))
        let perGroup = Self.nb * blocks
        if g == capacity {
            let grown = max(16, capacity * 2)
            let b = UnsafeMutablePointer<UInt64>.allocate(capacity: grown * perGroup)
            b.moveInitialize(from: buckets, count: g * perGroup)
            buckets.deallocate()
            buckets = b
            let s = UnsafeMutablePointer<Stats>.allocate(capacity: grown)
            s.moveInitialize(from: stats, count: g)
            stats.deallocate()
            stats = s
            capacity = grown
        }
        (buckets + g * perGroup).initialize(repeating: 0, count: perGroup)
        (stats + g).initialize(to: Stats())
        return g
    }

    /// The summary; frees the tables (the accumulator is not used after).
    func finish() -> TraceSummary {
        defer {
            slots.deallocate()
            levelRecords.deallocate()
            buckets.deallocate()
            stats.deallocate()
        }
        var groups: [(TraceSummary.Group, BlockHistograms?)] = []
        for (g, key) in keys.enumerated() {
            let base = g * blocks * Self.nb
            var b = Array(UnsafeBufferPointer(start: buckets + base, count: Self.nb))
            for k in 1..<max(1, blocks) {
                let o = base + k * Self.nb
                for i in 0..<Self.nb { b[i] &+= buckets[o + i] }
            }
            let count = b.reduce(0, &+)
            let st = stats[g]
            let group = TraceSummary.Group(
                level: key.level, reason: ExitReason(key: key.reason), handler: Handler(rawValue: key.handler),
                count: count, share: total == 0 ? 0 : Double(count) / Double(total),
                unclaimed: st.unclaimed,
                histogram: DurationHistogram(buckets: b, count: count, sum: st.sum, max: st.max, min: st.min,
                                             sumSquares: st.squares))
            let perBlock = blocks > 1
                ? BlockHistograms(blocks: blocks, dense: UnsafeBufferPointer(start: buckets + base, count: blocks * Self.nb),
                                  min: st.min, max: st.max)
                : nil
            groups.append((group, perBlock))
        }
        groups.sort {
            ($0.0.level, $0.0.reason.key, $0.0.handler.rawValue) < ($1.0.level, $1.0.reason.key, $1.0.handler.rawValue)
        }
        let first: UInt64? = total == 0 ? nil : minTime
        let last: UInt64? = total == 0 ? nil : maxTime
        let duration = total == 0 ? 0 : maxTime - minTime
        var levels: [TraceSummary.Level] = []
        for l in 0..<256 where levelRecords[l] > 0 {
            let rate: Double? = duration == 0 ? nil : Double(levelExits[l]) / (Double(duration) / 1e9)
            levels.append(.init(level: UInt8(l), records: levelRecords[l], exits: levelExits[l], exitsPerSecond: rate))
        }
        var unclaimedTotal: UInt64 = 0
        for g in 0..<keys.count { unclaimedTotal &+= stats[g].unclaimed }
        var summary = TraceSummary(recordCount: total, firstTimestamp: first, lastTimestamp: last,
                                   groups: groups.map(\.0), levels: levels, unclaimed: unclaimedTotal)
        summary.groupBlocks = groups.compactMap(\.1)
        return summary
    }
}
