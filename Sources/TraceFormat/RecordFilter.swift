/// Which records an analysis sees (`--from`, `--to`, `--level`, `--reason`,
/// `--handler`, `--vcpu`, `--episode-root` of every `terrapin-trace`
/// command). Every condition given must hold; an empty set means "any".
public struct RecordFilter: Sendable, Equatable {
    /// Timestamps at or after `from` and before `to`, ns since the run start.
    public var from: UInt64?
    public var to: UInt64?
    public var levels: Set<UInt8> = []
    /// `ExitReason` keys.
    public var reasons: Set<UInt64> = []
    /// `Handler` raw values.
    public var handlers: Set<UInt8> = []
    public var vcpus: Set<UInt16> = []
    /// Keep only records of episodes whose root has one of these reasons (`ExitReason` keys).
    public var episodeRoots: Set<UInt64> = []

    public init() {}

    /// True when no condition is set (the filter keeps every record).
    public var isEmpty: Bool {
        from == nil && to == nil && levels.isEmpty && reasons.isEmpty && handlers.isEmpty && vcpus.isEmpty
            && episodeRoots.isEmpty
    }

    /// The record conditions, all but `episodeRoots`.
    @inline(__always)
    public func matches(_ r: TraceRecord) -> Bool {
        if let from, r.timestamp < from { return false }
        if let to, r.timestamp >= to { return false }
        if !levels.isEmpty && !levels.contains(r.level) { return false }
        if !reasons.isEmpty && !reasons.contains(ExitReason(r).key) { return false }
        if !handlers.isEmpty && !handlers.contains(r.handler.rawValue) { return false }
        if !vcpus.isEmpty && !vcpus.contains(r.vcpu) { return false }
        return true
    }

    /// The episode ids of `reader` whose root (the first reflected record of
    /// level 2 or more with that id, as in `EpisodeAnalysis`) has one of `episodeRoots`.
    public func episodes(in reader: TraceReader) -> Set<UInt64> {
        var decided = Set<UInt64>(), kept = Set<UInt64>()
        reader.forEach { r in
            guard r.episode != 0, r.handler == .reflected, r.level >= 2, decided.insert(r.episode).inserted else { return }
            if episodeRoots.contains(ExitReason(r).key) { kept.insert(r.episode) }
        }
        return kept
    }
}

extension ExitReason {
    /// A reason by the name tools print (`io-out`, `EPT_VIOLATION`,
    /// `VMX_REASON_70`, `kind-30`), in any case, or nil.
    public init?(name: String) {
        let wanted = name.lowercased()
        for code in UInt8(1)...UInt8(255) where ExitKind(rawValue: code).name == wanted {
            self = .kind(ExitKind(rawValue: code))
            return
        }
        for code in UInt32(0)..<UInt32(256) where ExitReason.vmx(code).name.lowercased() == wanted {
            self = .vmx(code)
            return
        }
        if wanted.hasPrefix("vmx_reason_"), let code = UInt32(wanted.dropFirst("vmx_reason_".count)) {
            self = .vmx(code)
            return
        }
        return nil
    }
}
