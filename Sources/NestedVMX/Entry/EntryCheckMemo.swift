import VMXArch

/// A set of VMCS12 slots (`VMCS12Layout`), one bit each.
public struct FieldSet: Sendable {
    static let words = 4
    var bits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    static func single(_ slot: Int) -> FieldSet {
        var s = FieldSet()
        s.insert(slot)
        return s
    }

    public static let empty = FieldSet()
    public static var all: FieldSet { FieldSet(bits: (.max, .max, .max, .max)) }

    init() {}
    init(bits: (UInt64, UInt64, UInt64, UInt64)) { self.bits = bits }

    /// The slots whose values differ between `a` and `b` (same length).
    init(differencesOf a: [UInt64], _ b: [UInt64]) {
        precondition(a.count == b.count && a.count <= 64 * Self.words)
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                for slot in 0..<a.count where a[slot] != b[slot] { insert(slot) }
            }
        }
    }

    @inline(__always)
    public mutating func insert(_ slot: Int) {
        let bit = UInt64(1) << UInt64(slot & 63)
        switch slot >> 6 {
        case 0: bits.0 |= bit
        case 1: bits.1 |= bit
        case 2: bits.2 |= bit
        default: bits.3 |= bit
        }
    }

    @inline(__always)
    mutating func remove(_ slot: Int) {
        let bit = ~(UInt64(1) << UInt64(slot & 63))
        switch slot >> 6 {
        case 0: bits.0 &= bit
        case 1: bits.1 &= bit
        case 2: bits.2 &= bit
        default: bits.3 &= bit
        }
    }

    @inline(__always)
    mutating func formUnion(_ o: FieldSet) {
        bits.0 |= o.bits.0; bits.1 |= o.bits.1; bits.2 |= o.bits.2; bits.3 |= o.bits.3
    }

    /// Word `i` (slots 64i ..< 64i + 64).
    @inline(__always)
    func word(_ i: Int) -> UInt64 {
        switch i {
        case 0: bits.0
        case 1: bits.1
        case 2: bits.2
        default: bits.3
        }
    }

    /// Calls `body` with each slot in the set, in ascending order.
    @inline(__always)
    func forEach(_ body: (Int) -> Void) {
        for w in 0..<Self.words {
            var b = word(w)
            while b != 0 {
                body(w * 64 + b.trailingZeroBitCount)
                b &= b &- 1
            }
        }
    }

    static var capacity: Int { 64 * words }

    @inline(__always)
    public func intersects(_ o: FieldSet) -> Bool {
        (bits.0 & o.bits.0) | (bits.1 & o.bits.1) | (bits.2 & o.bits.2) | (bits.3 & o.bits.3) != 0
    }
}

/// Bits of a field that checks test on their own, recorded as slots of
/// their own after the fields' (`FieldSet`): a check that tests only
/// RFLAGS.VM depends on that bit, not on the arithmetic flags, which change
/// at nearly every VM exit.
public enum FieldPart: Int, CaseIterable, Sendable {
    case rflagsVM, rflagsIF, rflagsTF

    public var field: VMCSField { .guestRFLAGS }
    public var mask: UInt64 {
        switch self {
        case .rflagsVM: 1 << 17
        case .rflagsIF: 1 << 9
        case .rflagsTF: 1 << 8
        }
    }
    /// The part's own slot in a `FieldSet`.
    public var slot: Int { VMCSField.allFields.count + rawValue }
    /// The field's slot in the VMCS12.
    var fieldSlot: Int { VMCS12Layout.slot(of: field)! }
}

/// What one evaluation of a check read: the VMCS12 slots, and whether it
/// read guest memory. `EntryContext` records into it while a check runs
/// under `VMEntryChecker.check(_:memo:)`.
final class EntryReads {
    var fields = FieldSet()
    var memory = false
}

/// The VM-entry checks' verdicts from the last entry, so that an entry
/// re-runs only the checks whose inputs changed since (docs/ARCHITECTURE.md,
/// "What the switch skips").
///
/// Each check is a function of the VMCS12 fields it reads, the
/// capabilities, the platform facts, the launch flag, the VMCS address
/// and guest memory. Every check that runs records the fields it read, so
/// the record is exact for its path: the same inputs take the same path
/// and give the same verdict. A check that passed is not run again while
/// none of the fields it read has changed, unless it read guest memory
/// (which L1 may have written since: the virtual-APIC page, the VMCS link
/// pointer's region, the PDPTEs, the MSR-load list), and no check is
/// skipped after anything else in the key changed or after a failure.
/// The result is the same as `VMEntryChecker.check(_:)`'s, in the SDM's
/// order (`VMEntryCheckMemoTests`, the `vmcs-entry` fuzz target).
public struct EntryCheckMemo: Equatable, Sendable {
    /// What the checks read besides fields and memory.
    struct Key: Equatable, Sendable {
        var address: UInt64
        var launch: Bool
        var capabilities: VMXCapabilities
        var processorInIA32eMode, inSMM, supportsRTM: Bool
        var linearAddressBits: Int
        var eferSupported, debugCtlSupported: UInt64

        init(_ c: EntryContext) {
            address = c.vmcsAddress
            launch = c.launch
            capabilities = c.capabilities
            processorInIA32eMode = c.platform.processorInIA32eMode
            inSMM = c.platform.inSMM
            supportsRTM = c.platform.supportsRTM
            linearAddressBits = c.platform.linearAddressBits
            eferSupported = c.platform.eferSupported
            debugCtlSupported = c.platform.debugCtlSupported
        }
    }

    /// nil: nothing known (before the first entry, after a failure).
    var key: Key?
    /// The VMCS12 values all checks last passed with.
    var values: [UInt64] = []
    /// Per check (in `VMEntryChecker.checks` order): the fields its last
    /// evaluation read, and whether it read memory.
    var reads: [FieldSet] = []
    var readsMemory: [Bool] = []
    /// The same, inverted, to find the checks an entry re-runs without
    /// testing each one: per `FieldSet` slot, the checks whose last
    /// evaluation read it, and the checks that read memory, as sets of
    /// check indices (a `FieldSet` holds up to 256). Kept equal to
    /// `reads` and `readsMemory` while `key` is set (`indexMatchesReads`).
    var readers: [FieldSet] = []
    var memoryReaders = FieldSet()
    /// How many checks the last call evaluated (the rest were known to pass).
    public internal(set) var evaluated = 0

    public init() {}

    /// `readers` and `memoryReaders` say what `reads` and `readsMemory` say.
    var indexMatchesReads: Bool {
        guard readers.count == FieldSet.capacity, reads.count == readsMemory.count else { return false }
        for slot in 0..<FieldSet.capacity {
            var expected = FieldSet()
            for (i, r) in reads.enumerated() where r.intersects(FieldSet.single(slot)) { expected.insert(i) }
            guard expected.bits == readers[slot].bits else { return false }
        }
        var memory = FieldSet()
        for (i, m) in readsMemory.enumerated() where m { memory.insert(i) }
        return memory.bits == memoryReaders.bits
    }

    /// Rebuilds `readers` and `memoryReaders` from `reads` and `readsMemory`.
    mutating func rebuildIndex() {
        readers = [FieldSet](repeating: FieldSet(), count: FieldSet.capacity)
        memoryReaders = FieldSet()
        for i in reads.indices {
            reads[i].forEach { readers[$0].insert(i) }
            if readsMemory[i] { memoryReaders.insert(i) }
        }
    }

    /// A cache, not state: two are equal whatever they hold, so that a
    /// `VMXState` compares by what L1 can observe.
    public static func == (a: EntryCheckMemo, b: EntryCheckMemo) -> Bool { true }
}
