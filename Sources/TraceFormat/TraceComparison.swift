/// Two summaries side by side (`terrapin-trace compare A B`), per (level,
/// reason, handler) and per level, optionally normalised by a unit of work.
///
/// With units, every count and time is divided by its trace's units (e.g.
/// exits per iteration). A change is B/A − 1 of the (normalised) values; a
/// row is flagged when the count or the time changes by more than the
/// threshold, or when it exists in one trace only.
public struct TraceComparison: Sendable {
    public struct Row: Sendable, Equatable {
        public var level: UInt8
        /// nil for a level total.
        public var reason: ExitReason?
        public var handler: Handler?
        public var countA: UInt64
        public var countB: UInt64
        /// Total handling time, ns.
        public var timeA: UInt64
        public var timeB: UInt64
        /// Count and time (ns) per unit of work, or raw when not normalised.
        public var normCountA: Double
        public var normCountB: Double
        public var normTimeA: Double
        public var normTimeB: Double

        /// B/A − 1; nil when A is 0.
        public var countChange: Double? { change(normCountA, normCountB) }
        public var timeChange: Double? { change(normTimeA, normTimeB) }
        /// normB / normA; nil when A is 0.
        public var countRatio: Double? { normCountA == 0 ? nil : normCountB / normCountA }
        public var timeRatio: Double? { normTimeA == 0 ? nil : normTimeB / normTimeA }

        private func change(_ a: Double, _ b: Double) -> Double? { a == 0 ? nil : b / a - 1 }

        /// Beyond `threshold` (a fraction) in count or time, or present on one side only.
        public func exceeds(_ threshold: Double) -> Bool {
            if (countA == 0) != (countB == 0) { return true }
            let changes = [countChange, timeA == 0 && timeB == 0 ? 0 : timeChange]
            return changes.contains { c in c.map { abs($0) > threshold } ?? true }
        }
    }

    /// Units of work of A and B; nil when not normalised.
    public var unitsA: Double?
    public var unitsB: Double?
    public var threshold: Double
    /// One row per (level, reason, handler) in either trace, sorted.
    public var rows: [Row]
    /// One row per level (exits only, events excluded), sorted.
    public var levels: [Row]

    public init(_ a: TraceSummary, _ b: TraceSummary, unitsA: Double? = nil, unitsB: Double? = nil,
                threshold: Double = 0.10) {
        self.unitsA = unitsA
        self.unitsB = unitsB
        self.threshold = threshold
        let ua = unitsA ?? 1, ub = unitsB ?? 1
        func row(_ level: UInt8, _ reason: ExitReason?, _ handler: Handler?,
                 _ ca: UInt64, _ cb: UInt64, _ ta: UInt64, _ tb: UInt64) -> Row {
            Row(level: level, reason: reason, handler: handler, countA: ca, countB: cb, timeA: ta, timeB: tb,
                normCountA: Double(ca) / ua, normCountB: Double(cb) / ub,
                normTimeA: Double(ta) / ua, normTimeB: Double(tb) / ub)
        }
        struct Key: Hashable, Comparable {
            var level: UInt8, reason: UInt64, handler: UInt8
            static func < (x: Key, y: Key) -> Bool { (x.level, x.reason, x.handler) < (y.level, y.reason, y.handler) }
        }
        var sides: [Key: (a: TraceSummary.Group?, b: TraceSummary.Group?)] = [:]
        for g in a.groups { sides[Key(level: g.level, reason: g.reason.key, handler: g.handler.rawValue), default: (nil, nil)].a = g }
        for g in b.groups { sides[Key(level: g.level, reason: g.reason.key, handler: g.handler.rawValue), default: (nil, nil)].b = g }
        rows = sides.keys.sorted().map { k in
            let (ga, gb) = sides[k]!
            return row(k.level, ExitReason(key: k.reason), Handler(rawValue: k.handler),
                       ga?.count ?? 0, gb?.count ?? 0, ga?.totalDuration ?? 0, gb?.totalDuration ?? 0)
        }
        var lv: [UInt8: (ca: UInt64, cb: UInt64, ta: UInt64, tb: UInt64)] = [:]
        for t in a.levelTotals { lv[t.level, default: (0, 0, 0, 0)].ca = t.exits; lv[t.level, default: (0, 0, 0, 0)].ta = t.time }
        for t in b.levelTotals { lv[t.level, default: (0, 0, 0, 0)].cb = t.exits; lv[t.level, default: (0, 0, 0, 0)].tb = t.time }
        levels = lv.keys.sorted().map { l in
            let v = lv[l]!
            return row(l, nil, nil, v.ca, v.cb, v.ta, v.tb)
        }
    }

    public var flagged: [Row] { rows.filter { $0.exceeds(threshold) } }

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
