/// Log-linear bucketing of UInt32 durations: values below 32 get exact
/// buckets; above, each power-of-two range is split into 16 linear
/// sub-buckets, so a bucket's upper bound overstates a value by < 1/16 (6.25%).
public enum DurationBuckets {
    /// Buckets needed to cover 0 ... UInt32.max.
    public static let count = 464
    /// Worst-case relative error of `upperBound(bucket(v))` over `v`.
    public static let relativeError = 1.0 / 16.0

    @inlinable @inline(__always)
    public static func bucket(_ v: UInt32) -> Int {
        if v < 32 { return Int(v) }
        let e = 31 &- v.leadingZeroBitCount          // index of the top bit, 5...31
        return ((e &- 3) << 4) | Int((v >> UInt32(e &- 4)) & 15)
    }

    /// Smallest value that falls in bucket `i`.
    public static func lowerBound(_ i: Int) -> UInt64 { i < 32 ? UInt64(max(i, 0)) : upperBound(i - 1) + 1 }

    /// Largest value that falls in bucket `i`.
    public static func upperBound(_ i: Int) -> UInt64 {
        if i < 32 { return UInt64(i) }
        let e = (i >> 4) + 3
        let width = UInt64(1) << UInt64(e - 4)
        let lower = UInt64(16 + (i & 15)) << UInt64(e - 4)
        return lower + width - 1
    }
}

/// A duration histogram with exact count, sum, min, max and sum of squares.
public struct DurationHistogram: Sendable, Equatable {
    public private(set) var buckets: [UInt64]
    public private(set) var count: UInt64 = 0
    public private(set) var sum: UInt64 = 0
    public private(set) var max: UInt32 = 0
    /// Exact minimum; `UInt32.max` while empty (use `minimum`).
    public private(set) var min: UInt32 = .max
    /// Sum of squared values, for the standard deviation.
    public private(set) var sumSquares: Double = 0

    public init() { buckets = Array(repeating: 0, count: DurationBuckets.count) }

    public mutating func add(_ d: UInt32) {
        buckets[DurationBuckets.bucket(d)] &+= 1
        count &+= 1
        sum &+= UInt64(d)
        if d > max { max = d }
        if d < min { min = d }
        sumSquares += Double(d) * Double(d)
    }

    init(buckets: [UInt64], count: UInt64, sum: UInt64, max: UInt32, min: UInt32, sumSquares: Double) {
        self.buckets = buckets
        self.count = count
        self.sum = sum
        self.max = max
        self.min = min
        self.sumSquares = sumSquares
    }

    /// Adds every value of `other`.
    public mutating func merge(_ other: DurationHistogram) {
        for i in buckets.indices { buckets[i] &+= other.buckets[i] }
        count &+= other.count
        sum &+= other.sum
        max = Swift.max(max, other.max)
        min = Swift.min(min, other.min)
        sumSquares += other.sumSquares
    }

    /// The exact minimum, 0 for an empty histogram.
    public var minimum: UInt32 { count == 0 ? 0 : min }

    /// Population standard deviation (0 for fewer than two values).
    public var standardDeviation: Double {
        guard count > 1 else { return 0 }
        let n = Double(count), m = Double(sum) / n
        return (Swift.max(0, sumSquares / n - m * m)).squareRoot()
    }

    /// The duration at or below which fraction `p` (0...1) of values lie:
    /// the upper bound of the bucket holding that rank, capped at the exact max.
    /// 0 for an empty histogram.
    public func percentile(_ p: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let clamped = Swift.min(Swift.max(p, 0), 1)
        let rank = Swift.max(1, UInt64((clamped * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (i, n) in buckets.enumerated() {
            seen &+= n
            if seen >= rank { return Swift.min(DurationBuckets.upperBound(i), UInt64(max)) }
        }
        return UInt64(max)
    }

    public var mean: Double { count == 0 ? 0 : Double(sum) / Double(count) }
}
