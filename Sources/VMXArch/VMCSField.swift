/// A VMCS component encoding, the 32-bit operand of VMREAD and VMWRITE
/// (SDM Vol. 3C 25.11.2 "VMREAD, VMWRITE, and Encodings of VMCS Fields",
/// table "Structure of VMCS Component Encoding").
///
/// The struct is open: a guest may hand VMREAD/VMWRITE any 32-bit value, and
/// every value decodes, whether or not it names a field the SDM defines. The
/// fields Appendix B defines are the static constants in
/// `VMCSFieldCatalog.swift`, collected in `allFields`.
///
///     bit  0      access type (0 = full, 1 = high 32 bits of a 64-bit field)
///     bits 9:1    index
///     bits 11:10  type (0 control, 1 VM-exit information, 2 guest state, 3 host state)
///     bit  12     reserved, must be 0
///     bits 14:13  width (0 16-bit, 1 64-bit, 2 32-bit, 3 natural width)
///     bits 31:15  reserved, must be 0
public struct VMCSField: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Shorthand for `init(rawValue:)`.
    @inlinable public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// Field width, bits 14:13 of the encoding.
    public enum Width: UInt8, Sendable, CaseIterable {
        case bits16 = 0
        case bits64 = 1
        case bits32 = 2
        /// Natural width: 64 bits on processors that support Intel 64.
        case natural = 3

        /// Bytes the field occupies; natural-width fields are 8 bytes (Intel 64).
        public var byteCount: Int {
            switch self {
            case .bits16: 2
            case .bits32: 4
            case .bits64, .natural: 8
            }
        }

        /// Mask of the bits a VMWRITE of this width keeps (natural width = 64 bits).
        @inlinable public var valueMask: UInt64 {
            switch self {
            case .bits16: 0xffff
            case .bits32: 0xffff_ffff
            case .bits64, .natural: ~0
            }
        }
    }

    /// Field type, bits 11:10 of the encoding (SDM 25.11.2).
    public enum Kind: UInt8, Sendable, CaseIterable {
        case control = 0
        /// "VM-exit information" (called "read-only data" in Appendix B).
        case exitInformation = 1
        case guestState = 2
        case hostState = 3
    }

    // MARK: Bit layout

    static let accessTypeBit: UInt32 = 1 << 0
    static let indexShift: UInt32 = 1
    static let indexMask: UInt32 = 0x1ff
    static let kindShift: UInt32 = 10
    static let widthShift: UInt32 = 13
    /// Bit 12 and bits 31:15.
    public static let reservedBitsMask: UInt32 = 0xffff_8000 | 1 << 12

    // MARK: Decoding
    // The decoders are inlinable, with the bit positions as literals: the
    // VMCS12 cache decodes a field at every VMREAD, VMWRITE and state
    // transfer, and a call into this module per property cost more than
    // the decoding (callgrind, docs/PERFORMANCE.md).

    /// Bits 14:13.
    @inlinable public var width: Width { Width(rawValue: UInt8(truncatingIfNeeded: rawValue >> 13) & 3)! }

    /// Bits 11:10.
    @inlinable public var kind: Kind { Kind(rawValue: UInt8(truncatingIfNeeded: rawValue >> 10) & 3)! }

    /// Bits 9:1.
    public var index: UInt16 { UInt16(truncatingIfNeeded: (rawValue >> Self.indexShift) & Self.indexMask) }

    /// Bit 0: the encoding addresses the high 32 bits of a 64-bit field.
    /// (For other widths the SDM requires this bit to be 0; such an encoding
    /// names no field.)
    @inlinable public var isHighAccess: Bool { rawValue & 1 != 0 }

    /// Bit 12 or any of bits 31:15 is set. No defined field has them set.
    @inlinable public var hasReservedBitsSet: Bool { rawValue & (0xffff_8000 | 1 << 12) != 0 }

    /// The same field with the access-type bit clear (the "full" encoding).
    public var full: VMCSField { VMCSField(rawValue: rawValue & ~Self.accessTypeBit) }

    /// The high-access encoding (full | 1) of a 64-bit field; nil for other widths.
    public var high: VMCSField? {
        width == .bits64 ? VMCSField(rawValue: rawValue | Self.accessTypeBit) : nil
    }

    /// Fields of type "VM-exit information" are read-only unless
    /// IA32_VMX_MISC bit 29 is set (SDM 25.11.2, A.6).
    @inlinable public var isReadOnly: Bool { kind == .exitInformation }

    // MARK: Encoding

    /// Builds an encoding from its parts. `index` is truncated to 9 bits; the
    /// access-type bit is set only when `high` is true (meaningful only for
    /// 64-bit fields).
    public init(width: Width, kind: Kind, index: UInt16, high: Bool = false) {
        rawValue = UInt32(width.rawValue) << Self.widthShift
            | UInt32(kind.rawValue) << Self.kindShift
            | (UInt32(index) & Self.indexMask) << Self.indexShift
            | (high ? Self.accessTypeBit : 0)
    }

    // MARK: Names

    /// Linux-style upper snake case name ("GUEST_RIP"); a high-access encoding of
    /// a known 64-bit field gets "_HIGH" ("EPT_POINTER_HIGH"); anything else is
    /// "field 0x....".
    public var name: String {
        if let known = Self.names[rawValue] { return known }
        if isHighAccess, width == .bits64, let base = Self.names[full.rawValue] { return base + "_HIGH" }
        return "field 0x" + hex(rawValue, digits: 4)
    }

    /// True when this encoding (full or high) names a field of `allFields`.
    public var isKnown: Bool {
        if Self.names[rawValue] != nil { return true }
        return isHighAccess && width == .bits64 && Self.names[full.rawValue] != nil
    }

    public var description: String { name }

    // MARK: Catalog queries

    /// Every field Appendix B defines (full encodings), sorted by encoding.
    public static let allFields: [VMCSField] = catalog.map(\.field).sorted { $0.rawValue < $1.rawValue }

    /// The highest index among `allFields`: what IA32_VMX_VMCS_ENUM bits 9:1
    /// report (SDM A.9).
    public static var highestIndex: UInt16 { cachedHighestIndex }

    private static let cachedHighestIndex: UInt16 = allFields.map(\.index).max() ?? 0

    private static let names: [UInt32: String] = {
        var table: [UInt32: String] = [:]
        for entry in catalog { table[entry.field.rawValue] = entry.name }
        return table
    }()
}

/// Lower-case hexadecimal, zero-padded to at least `digits` digits.
func hex<T: BinaryInteger>(_ value: T, digits: Int) -> String {
    let text = String(value, radix: 16)
    return text.count >= digits ? text : String(repeating: "0", count: digits - text.count) + text
}
