import VMXArch

/// A deterministic generator of nested traces, for tests, fixtures and the
/// benchmark, until real nested runs exist (`terrapin-trace generate`).
///
/// The modelled run: an L1 hypervisor sets up a VMCS (VMXON, VMPTRLD,
/// VMWRITEs, VMLAUNCH; level 1, no episode), then runs an L2 loop. Each L2
/// exit (level 2) has a VMX reason: IO_INSTRUCTION, EPT_VIOLATION, HLT,
/// VMCALL or MSR_WRITE. L0 handles some itself (handler l0, episode 0); the
/// rest are reflected to L1 (handler reflected) and start an episode with a
/// fresh id. Inside it L1 runs its exit handler: VMREADs, sometimes an access
/// to its own device (io-out or mmio-write, kind only), VMWRITEs, and a
/// VMRESUME that ends it; all level 1, handled by L0, with the episode's id.
/// VMX instructions have kind internal-error. After 200 L2 exits, and then
/// now and then, the L2 loop enters a storm phase: 2000-4000 cheap, L0-handled
/// EPT violations in quick succession.
/// Profile `shadow` models shadow VMCS: few VMREADs and no VMWRITE exits.
public struct SyntheticTrace: Sendable {
    public enum Profile: String, CaseIterable, Sendable {
        case baseline, shadow
    }

    public var records: Int
    public var seed: UInt64
    public var profile: Profile

    public init(records: Int, seed: UInt64, profile: Profile = .baseline) {
        self.records = max(0, records)
        self.seed = seed
        self.profile = profile
    }

    /// The metadata written with the trace; `iterations` is the number of L2 exits.
    public func metadata(iterations: Int) -> TraceMetadata {
        TraceMetadata([
            ("command", "terrapin-trace generate --records \(records) --seed \(seed) --profile \(profile.rawValue)"),
            ("image", "synthetic-nested"),
            ("cmdline", "L1 hypervisor running an L2 device loop"),
            ("generator", "terrapin-trace generate"),
            ("profile", profile.rawValue),
            ("seed", String(seed)),
            ("iterations", String(iterations)),
            ("vcpus", "1"),
            ("clock", "synthetic ns since run start"),
        ], startTimeNanos: 1_767_225_600_000_000_000)
    }

    /// Writes the trace to `path`; returns the number of L2 exits.
    @discardableResult
    public func write(to path: String) throws(TraceError) -> Int {
        let l2 = generate { _ in }
        let w = try TraceWriter(path: path, metadata: metadata(iterations: l2))
        generate { w.append($0) }
        try w.finish()
        return l2
    }

    /// Calls `emit` with exactly `records` records; returns the number of L2 exits.
    @discardableResult
    public func generate(_ emit: (TraceRecord) -> Void) -> Int {
        withoutActuallyEscaping(emit) { emit in
            var g = Generator(seed: seed, limit: records, shadow: profile == .shadow, emit: emit)
            g.run()
            return g.l2Exits
        }
    }
}

private struct Generator {
    var rng: SeededRandom
    let limit: Int
    let shadow: Bool
    let emit: (TraceRecord) -> Void
    var count = 0
    var t: UInt64 = 1_000_000
    var episode: UInt64 = 0
    var l2Exits = 0
    var rip: UInt64 = 0x1000

    init(seed: UInt64, limit: Int, shadow: Bool, emit: @escaping (TraceRecord) -> Void) {
        rng = SeededRandom(seed: seed)
        self.limit = limit
        self.shadow = shadow
        self.emit = emit
    }

    var room: Int { limit - count }

    mutating func put(_ r: TraceRecord, gap: UInt64) {
        guard count < limit else { return }
        emit(r)
        count += 1
        t += UInt64(r.duration) + gap
    }

    mutating func vmx(_ reason: VMXExitReason, field: UInt64, episode id: UInt64, dur: ClosedRange<Int>) {
        put(TraceRecord(timestamp: t, duration: UInt32(rng.in(dur)), level: 1, kind: .internalError,
                        rip: 0xFFFF_8000_0010_0000 + UInt64(rng.in(0...0xFFF)), address: field,
                        value: rng.next() & 0xFFFF_FFFF, episode: id, vmxReason: UInt32(reason.rawValue)),
            gap: UInt64(rng.in(80...600)))
    }

    mutating func run() {
        // L1 boot: VMXON, VMPTRLD, VMCS setup, VMLAUNCH.
        vmx(.vmxon, field: 0, episode: 0, dur: 2_000...4_000)
        vmx(.vmptrld, field: 0, episode: 0, dur: 1_000...2_000)
        for f in [0x0000 as UInt64, 0x4000, 0x4002, 0x401E, 0x6800, 0x6802, 0x681E, 0x681C] {
            vmx(.vmwrite, field: f, episode: 0, dur: 150...400)
        }
        vmx(.vmlaunch, field: 0, episode: 0, dur: 5_000...9_000)
        var storm = 0
        while count < limit {
            // A storm after the first 200 L2 exits, then one per ~5000 on average.
            if storm == 0 && (l2Exits == 200 || rng.below(5000) == 0) { storm = rng.in(2000...4000) }
            if storm > 0 || room < 40 {
                storm = max(0, storm - 1)
                l2(reason: .eptViolation, kind: rng.below(4) == 0 ? .mmioRead : .mmioWrite, reflected: false,
                   dur: 150...450, gap: 40...250)
                continue
            }
            let pick = rng.below(100)
            let reason: VMXExitReason, kind: ExitKind, reflectPercent: Int
            switch pick {
            case 0..<35: (reason, kind, reflectPercent) = (.ioInstruction, rng.below(10) < 7 ? .ioOut : .ioIn, 75)
            case 35..<70: (reason, kind, reflectPercent) = (.eptViolation, rng.below(10) < 6 ? .mmioWrite : .mmioRead, 35)
            case 70..<80: (reason, kind, reflectPercent) = (.hlt, .hlt, 90)
            case 80..<90: (reason, kind, reflectPercent) = (.vmcall, .internalError, 100)
            default: (reason, kind, reflectPercent) = (.wrmsr, .wrmsr, 50)
            }
            l2(reason: reason, kind: kind, reflected: rng.below(100) < reflectPercent,
               dur: 300...3_000, gap: 4_000...30_000)
        }
    }

    /// One L2 exit; a reflected one is followed by its L1 episode.
    mutating func l2(reason: VMXExitReason, kind: ExitKind, reflected: Bool, dur: ClosedRange<Int>, gap: ClosedRange<Int>) {
        l2Exits += 1
        rip = 0x40_0000 + UInt64(rng.below(0x4000))
        let address: UInt64, size: UInt8
        switch kind {
        case .ioIn, .ioOut: address = [0x3F8, 0x80, 0x60, 0x1F0][rng.below(4)]; size = 1
        case .mmioRead, .mmioWrite: address = 0xFEB0_0000 + UInt64(rng.below(0x1000)) & ~3; size = 4
        case .wrmsr: address = [0x10, 0x6E0, 0xC000_0100][rng.below(3)]; size = 0
        default: address = 0; size = 0
        }
        let id: UInt64 = reflected ? { episode += 1; return episode }() : 0
        put(TraceRecord(timestamp: t, duration: UInt32(rng.in(dur)), level: 2, kind: kind, rip: rip,
                        address: address, value: rng.next() & 0xFFFF, episode: id, vmxReason: UInt32(reason.rawValue),
                        handler: reflected ? .reflected : .l0, size: size),
            gap: reflected ? UInt64(rng.in(300...900)) : UInt64(rng.in(gap)))
        guard reflected else { return }
        let reads: Int
        switch reason {
        case .eptViolation: reads = rng.in(5...7)
        case .hlt: reads = 3
        default: reads = rng.in(4...5)
        }
        for i in 0..<(shadow ? reads / 4 : reads) {
            vmx(.vmread, field: [0x4402, 0x6400, 0x681E, 0x440C, 0x2400, 0x640A, 0x4406][i], episode: id, dur: 100...400)
        }
        if (reason == .ioInstruction && rng.below(10) < 4) || (reason == .eptViolation && rng.below(10) < 2) {
            let mmio = reason == .eptViolation
            put(TraceRecord(timestamp: t, duration: UInt32(rng.in(200...2_500)), level: 1,
                            kind: mmio ? .mmioWrite : .ioOut, rip: 0xFFFF_8000_0020_0000,
                            address: mmio ? 0xFEC0_0000 : 0x3F8, value: UInt64(rng.below(256)),
                            episode: id, size: mmio ? 4 : 1),
                gap: UInt64(rng.in(100...500)))
        }
        if !shadow {
            for i in 0..<rng.in(1...3) {
                vmx(.vmwrite, field: [0x681E, 0x4824, 0x4016][i], episode: id, dur: 120...500)
            }
        }
        vmx(.vmresume, field: 0, episode: id, dur: 800...3_000)
        if reason == .hlt && rng.below(10) < 3 {
            put(TraceRecord(timestamp: t, duration: 0, level: 2, kind: .interruptInjected, value: 0x40),
                gap: UInt64(rng.in(100...400)))
        }
        t += UInt64(rng.in(gap))
    }
}

/// xorshift64*: small, seeded, reproducible on every platform.
public struct SeededRandom: Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    public mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    public mutating func `in`(_ r: ClosedRange<Int>) -> Int { r.lowerBound + below(r.count) }
}
