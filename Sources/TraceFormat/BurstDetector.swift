/// Finds bursts: runs of consecutive fixed windows whose exit rate exceeds a
/// threshold. Windows are aligned to the run start (timestamp 0): window k
/// covers [k·w, (k+1)·w). A rate is a window's exits divided by its full
/// width, also for the partly covered first and last windows.
///
/// Only windows that hold exits are kept, so memory and `finish` grow with
/// the records, not with the time they span (a hostile trace may span 2^24
/// windows with two records). Counting allocates only when the exits move
/// to another window; timestamps at or beyond `maxWindows` windows are
/// counted as `beyondHorizon` and not windowed.
public struct BurstDetector: Sendable {
    public static let maxWindows = 1 << 24

    /// Window width, ns (at least 1).
    public let window: UInt64
    /// Exits of each window that has any, but the current one's.
    @usableFromInline var counts: [Int: UInt32] = [:]
    @usableFromInline var lo: UInt64 = 1
    @usableFromInline var hi: UInt64 = 0
    /// The window the last exit fell in (-1: none yet), and its exits.
    @usableFromInline var current = -1
    @usableFromInline var currentCount: UInt32 = 0
    public private(set) var beyondHorizon: UInt64 = 0

    public init(window: UInt64) { self.window = max(1, window) }

    /// Counts one exit at `timestamp`.
    @inlinable @inline(__always)
    public mutating func add(_ timestamp: UInt64) {
        if timestamp >= lo && timestamp < hi {
            currentCount &+= 1
        } else {
            addSlow(timestamp)
        }
    }

    @usableFromInline @inline(never)
    mutating func addSlow(_ timestamp: UInt64) {
        let k = timestamp / window
        guard k < UInt64(Self.maxWindows) else { beyondHorizon += 1; return }
        if current >= 0 { counts[current] = currentCount }
        current = Int(k)
        currentCount = (counts[current] ?? 0) &+ 1
        lo = k * window
        hi = saturatingAdd(lo, window)
    }

    /// A burst: consecutive hot windows.
    public struct Burst: Sendable, Equatable {
        public var start: UInt64
        public var end: UInt64
        public var windows: Int
        public var exits: UInt64
        /// exits / (end − start), per second.
        public var rate: Double
        /// The busiest window's rate, per second.
        public var peakRate: Double
    }

    public struct Result: Sendable {
        public var window: UInt64
        /// Exits per second above which a window is hot.
        public var threshold: Double
        /// Windows from the first to the last that holds an exit.
        public var windowCount: Int
        public var hotWindows: Int
        /// In time order.
        public var bursts: [Burst]
        public var exitsInBursts: UInt64
        public var peakRate: Double
        public var beyondHorizon: UInt64
    }

    /// Bursts whose windows exceed `threshold` exits/s. A window without
    /// exits is never hot (a threshold is not negative), so it ends a burst.
    public func finish(threshold: Double) -> Result {
        let perSecond = 1e9 / Double(window)
        var all = counts
        if current >= 0 { all[current] = currentCount }
        let windows = all.keys.sorted()
        var bursts: [Burst] = []
        var hot = 0, inBursts: UInt64 = 0, peak = 0.0
        var open: Burst?
        var previous = Int.min
        for index in windows {
            let n = all[index]!
            let rate = Double(n) * perSecond
            peak = max(peak, rate)
            let start = UInt64(index) * window
            if let b = open, !(rate > max(threshold, 0) && index == previous + 1) {
                bursts.append(b)
                open = nil
            }
            if rate > max(threshold, 0) {
                hot += 1
                inBursts += UInt64(n)
                if var b = open {
                    b.end = saturatingAdd(start, window)
                    b.windows += 1
                    b.exits += UInt64(n)
                    b.peakRate = max(b.peakRate, rate)
                    open = b
                } else {
                    open = Burst(start: start, end: saturatingAdd(start, window), windows: 1, exits: UInt64(n), rate: 0, peakRate: rate)
                }
            }
            previous = index
        }
        if let b = open { bursts.append(b) }
        for i in bursts.indices {
            bursts[i].rate = Double(bursts[i].exits) / (Double(bursts[i].end - bursts[i].start) / 1e9)
        }
        let windowCount = windows.last.map { $0 - windows[0] + 1 } ?? 0
        return Result(window: window, threshold: threshold, windowCount: windowCount, hotWindows: hot,
                      bursts: bursts, exitsInBursts: inBursts, peakRate: peak, beyondHorizon: beyondHorizon)
    }
}

@inline(__always)
func saturatingAdd(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (s, o) = a.addingReportingOverflow(b)
    return o ? .max : s
}

/// A burst threshold: an absolute rate, or a multiple of the trace's mean exit rate.
public enum BurstThreshold: Sendable, Equatable, CustomStringConvertible {
    case rate(Double)
    case meanMultiple(Double)

    /// Parses "50000", "50k", "2.5M" (exits/s) or "3x" (times the mean rate).
    public init?(_ text: String) {
        var t = Substring(text.lowercased())
        if t.hasSuffix("x") {
            t.removeLast()
            guard let m = Double(t), m.isFinite, m >= 0 else { return nil }
            self = .meanMultiple(m)
            return
        }
        var scale = 1.0
        if t.hasSuffix("k") { scale = 1e3; t.removeLast() } else if t.hasSuffix("m") { scale = 1e6; t.removeLast() }
        guard let v = Double(t), v.isFinite, v >= 0 else { return nil }
        self = .rate(v * scale)
    }

    public func resolve(meanRate: Double) -> Double {
        switch self {
        case .rate(let r): r
        case .meanMultiple(let m): m * meanRate
        }
    }

    public var description: String {
        switch self {
        case .rate(let r): "\(r) exits/s"
        case .meanMultiple(let m): "\(m)x the mean rate"
        }
    }
}

/// Parses a duration such as "1ms", "250us", "2s", "5000ns" or "5000" (ns). Nil if malformed or 0.
public func parseDuration(_ text: String) -> UInt64? {
    let t = text.lowercased()
    let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9)]
    for (suffix, scale) in units where t.hasSuffix(suffix) {
        guard let v = Double(t.dropLast(suffix.count)), v.isFinite, v > 0, v * scale < 1.8e19 else { return nil }
        let ns = (v * scale).rounded()
        return ns >= 1 ? UInt64(ns) : nil
    }
    guard let v = UInt64(t), v > 0 else { return nil }
    return v
}
