import VMXArch

/// Terrapin's VMCS12 layout in the 4 KiB VMCS region in L1 memory. The SDM
/// leaves the format to the implementation (SDM Vol. 3C 25.2); ours is:
///
/// | offset | size | content |
/// |---|---|---|
/// | 0 | 4 | revision identifier (bits 30:0) and shadow-VMCS indicator (bit 31) |
/// | 4 | 4 | VMX-abort indicator |
/// | 8 | 4 | launch state: 0 clear, 1 launched |
/// | 12 | 4 | reserved |
/// | 16 + 8·i | 8 | field i of `VMCSField.allFields`, little-endian, zero-extended |
///
/// L0 caches the current VMCS and writes it back on VMCLEAR (and VMXOFF and
/// VMPTRLD of another VMCS), as the SDM allows (25.11.1).
public enum VMCS12Layout {
    public static let revisionOffset: UInt64 = 0
    public static let abortOffset: UInt64 = 4
    public static let launchStateOffset: UInt64 = 8
    public static let fieldsOffset: UInt64 = 16
    public static let regionSize = 4096

    /// Slot of each full field encoding, by `denseKey`; -1: no field. A
    /// table rather than a dictionary: every VMREAD, VMWRITE and entry check
    /// looks a field up, and hashing was the largest part of L0's own time
    /// per nested exit (callgrind, docs/PERFORMANCE.md).
    static let slots: [Int16] = {
        var table = [Int16](repeating: -1, count: 1 << 13)
        for (slot, field) in VMCSField.allFields.enumerated() { table[denseKey(field)] = Int16(slot) }
        return table
    }()

    /// The bits of an encoding without reserved bits that tell full fields
    /// apart (SDM Appendix B): index (9:1), type (11:10) and width (14:13),
    /// in 13 bits.
    @inline(__always)
    static func denseKey(_ field: VMCSField) -> Int {
        let raw = field.rawValue
        return Int((raw >> 1) & 0x1ff) | Int((raw >> 10) & 0x3) << 9 | Int((raw >> 13) & 0x3) << 11
    }

    /// The storage slot of `field` (full or high access), or nil if the
    /// encoding names no field we support.
    @inline(__always)
    public static func slot(of field: VMCSField) -> Int? {
        guard !field.hasReservedBitsSet else { return nil }
        if field.isHighAccess && field.width != .bits64 { return nil }
        let slot = slots[denseKey(field)]
        return slot < 0 ? nil : Int(slot)
    }

    /// Byte offset of a slot inside the region.
    public static func offset(ofSlot slot: Int) -> UInt64 { fieldsOffset + 8 * UInt64(slot) }
}

/// The cached copy of one VMCS12.
public struct VMCS12: Equatable, Sendable {
    /// Guest-physical address of the VMCS region in L1 memory.
    public let address: UInt64
    public private(set) var values: [UInt64]
    public var launched: Bool
    /// The region is a Hyper-V enlightened VMCS (`EnlightenedVMCS`): its
    /// fields live at the TLFS offsets, L0 reads them at each entry and
    /// writes the exit's at each exit, and the Terrapin layout is never
    /// stored there.
    public private(set) var isEnlightened = false

    /// Loads the region at `address`; nil if it is not wholly in RAM. The
    /// region is L1's memory, which it may have written directly: each
    /// value is cut to its field's width (Appendix B), as VMWRITE would have
    /// stored it, so a 16- or 32-bit field never reads back wider (SDM
    /// 25.11.2 leaves the region's format to the implementation).
    public init?(loadingFrom address: UInt64, memory: some GuestMemoryAccess) {
        guard let raw = memory.read(address, count: VMCS12Layout.regionSize) else { return nil }
        self.address = address
        launched = raw[Int(VMCS12Layout.launchStateOffset)] & 1 != 0
        values = VMCSField.allFields.enumerated().map { slot, field in
            raw.littleEndian(at: Int(VMCS12Layout.offset(ofSlot: slot)), count: 8) & field.width.valueMask
        }
    }

    /// A VMCS with every field zero, as after VMCLEAR of fresh memory.
    public init(address: UInt64) {
        self.address = address
        values = [UInt64](repeating: 0, count: VMCSField.allFields.count)
        launched = false
    }

    /// An enlightened VMCS at `address` with every field zero, before its
    /// first load (TLFS: an eVMCS "must be initially zeroed").
    public init(enlightenedAt address: UInt64) {
        self.init(address: address)
        isEnlightened = true
    }

    /// The field's value as VMREAD sees it: the full 64 bits, or for a
    /// high access the upper half of a 64-bit field. nil: not a field.
    public func read(_ field: VMCSField) -> UInt64? {
        guard let slot = VMCS12Layout.slot(of: field) else { return nil }
        let v = values[slot]
        return field.isHighAccess ? v >> 32 : v
    }

    /// Stores `value` (already sized to the operand) with VMWRITE's width
    /// rules (SDM 31.3 VMWRITE): narrower fields drop high bits, a high
    /// access replaces bits 63:32 only. Returns false if not a field.
    @discardableResult
    public mutating func write(_ field: VMCSField, _ value: UInt64) -> Bool {
        guard let slot = VMCS12Layout.slot(of: field) else { return false }
        switch field.width {
        case .bits16: values[slot] = value & 0xffff
        case .bits32: values[slot] = value & 0xffff_ffff
        case .bits64 where field.isHighAccess: values[slot] = (values[slot] & 0xffff_ffff) | (value & 0xffff_ffff) << 32
        case .bits64, .natural: values[slot] = value
        }
        return true
    }

    /// Writes the cache back to the region; false if it is no longer RAM.
    /// An enlightened VMCS is left alone: its page is brought up to date at
    /// every VM exit (`EnlightenedVMCS.writeBack`), and the Terrapin layout
    /// would overwrite its fields.
    public func store(to memory: some GuestMemoryAccess) -> Bool {
        if isEnlightened { return true }
        var ok = memory.store(UInt32(launched ? 1 : 0), at: address + VMCS12Layout.launchStateOffset)
        for (slot, v) in values.enumerated() { ok = memory.store(v, at: address + VMCS12Layout.offset(ofSlot: slot)) && ok }
        return ok
    }
}

/// A full field's slot in the VMCS12 cache and the mask VMWRITE applies to
/// it (SDM 31.3 VMWRITE: narrower fields drop high bits), found once: the
/// state transfers read and write dozens of fixed fields at every VM exit
/// and entry, and finding each slot from its encoding cost more than the
/// access (docs/PERFORMANCE.md).
public struct ResolvedField: Sendable {
    let slot: Int
    let mask: UInt64

    /// `field` must be a full (not high-access) encoding the layout holds.
    public init(_ field: VMCSField) {
        guard !field.isHighAccess, let slot = VMCS12Layout.slot(of: field) else {
            preconditionFailure("\(field) is not a full field of the VMCS12 layout")
        }
        self.slot = slot
        mask = field.width.valueMask
    }
}

extension VMCS12 {
    /// The field's value: `read(field) ?? 0` and `write(field, value)` of
    /// the field it was resolved from.
    public subscript(field: ResolvedField) -> UInt64 {
        @inline(__always) get { values[field.slot] }
        @inline(__always) set { values[field.slot] = newValue & field.mask }
    }
}
