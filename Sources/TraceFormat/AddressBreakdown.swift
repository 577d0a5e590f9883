/// Exits per port, MSR index or guest-physical address, like `perf kvm stat
/// --event=ioport|mmio` (`terrapin-trace summary --by-address`). Only I/O,
/// MMIO and MSR records count: their address field holds the port, the
/// guest-physical address or the MSR index, whatever their VMX reason (an
/// L2 `IO_INSTRUCTION` reflected to L1 still has its port and direction).
public struct AddressBreakdown: Sendable {
    /// What an address is.
    public enum Space: String, Sendable {
        case port, gpa, msr

        /// The space of a record's address, nil for kinds without one.
        public init?(_ kind: ExitKind) {
            switch kind {
            case .ioIn, .ioOut: self = .port
            case .mmioRead, .mmioWrite: self = .gpa
            case .rdmsr, .wrmsr: self = .msr
            default: return nil
            }
        }
    }

    public struct Row: Sendable, Equatable {
        public var level: UInt8
        public var reason: ExitReason
        public var handler: Handler
        /// The access: io-in, io-out, mmio-read, mmio-write, rdmsr, wrmsr.
        public var kind: ExitKind
        public var address: UInt64
        public var count: UInt64
        public var unclaimed: UInt64
        public var total: UInt64
        public var min: UInt32
        public var max: UInt32
        public var sumSquares: Double

        public var space: Space { Space(kind) ?? .port }
        public var mean: Double { count == 0 ? 0 : Double(total) / Double(count) }
        public var standardDeviation: Double {
            guard count > 1 else { return 0 }
            let n = Double(count), m = Double(total) / n
            return Swift.max(0, sumSquares / n - m * m).squareRoot()
        }
    }

    /// One row per (level, reason, handler, access, address), most exits
    /// first (ties: level, reason, handler, kind, address).
    public var rows: [Row]
    /// Records with an address (the rows' total count).
    public var records: UInt64
    /// All records of the trace.
    public var recordCount: UInt64

    public init(_ reader: TraceReader) {
        struct Key: Hashable {
            var level: UInt8, reason: UInt64, handler: UInt8, kind: UInt8, address: UInt64
        }
        var index: [Key: Int] = [:]
        var rows: [Row] = []
        var lastKey: Key? = nil, last = 0
        var records: UInt64 = 0
        reader.forEach { r in
            guard Space(r.kind) != nil else { return }
            records += 1
            let key = Key(level: r.level, reason: ExitReason(r).key, handler: r.handler.rawValue, kind: r.kind.rawValue,
                          address: r.address)
            let i: Int
            if key == lastKey {
                i = last
            } else if let j = index[key] {
                i = j
            } else {
                i = rows.count
                index[key] = i
                rows.append(Row(level: r.level, reason: ExitReason(r), handler: r.handler, kind: r.kind, address: r.address,
                                count: 0, unclaimed: 0, total: 0, min: .max, max: 0, sumSquares: 0))
            }
            lastKey = key
            last = i
            rows[i].count += 1
            if r.flags.contains(.unclaimed) { rows[i].unclaimed += 1 }
            rows[i].total &+= UInt64(r.duration)
            rows[i].min = Swift.min(rows[i].min, r.duration)
            rows[i].max = Swift.max(rows[i].max, r.duration)
            rows[i].sumSquares += Double(r.duration) * Double(r.duration)
        }
        rows.sort {
            ($0.count, $1.level, $1.reason.key, $1.handler.rawValue, $1.kind.rawValue, $1.address)
                > ($1.count, $0.level, $0.reason.key, $0.handler.rawValue, $0.kind.rawValue, $0.address)
        }
        self.rows = rows
        self.records = records
        recordCount = UInt64(reader.recordCount)
    }
}
