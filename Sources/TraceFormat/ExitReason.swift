import VMXArch

/// What an analysis calls a record's reason: its VMX basic exit reason when
/// the record has one (nested exits), otherwise its exit kind. Reasons sort
/// kinds first, then VMX reasons, each by code.
public struct ExitReason: Hashable, Comparable, Sendable {
    /// `1 << 32 | vmx reason` for VMX reasons, the kind's byte otherwise.
    public let key: UInt64

    @inlinable @inline(__always)
    public init(key: UInt64) { self.key = key }

    @inlinable @inline(__always)
    public init(_ r: TraceRecord) {
        key = r.vmxReason == TraceRecord.noVMXReason ? UInt64(r.kind.rawValue) : (1 << 32 | UInt64(r.vmxReason))
    }

    public static func kind(_ k: ExitKind) -> ExitReason { ExitReason(key: UInt64(k.rawValue)) }
    public static func vmx(_ code: UInt32) -> ExitReason { ExitReason(key: 1 << 32 | UInt64(code)) }
    public static func vmx(_ reason: VMXExitReason) -> ExitReason { vmx(UInt32(reason.rawValue)) }

    /// True when the reason is a VMX basic exit reason.
    @inlinable public var isVMX: Bool { key >> 32 != 0 }
    /// The VMX basic exit reason or the kind's byte.
    public var code: UInt32 { UInt32(truncatingIfNeeded: key) }
    /// The exit kind, for reasons that are kinds.
    public var kind: ExitKind? { isVMX ? nil : ExitKind(rawValue: UInt8(truncatingIfNeeded: key)) }
    /// "vmx" or "kind".
    public var source: String { isVMX ? "vmx" : "kind" }

    /// VMX reasons by VMXArch's names of SDM Vol. 3C Appendix C, in upper case
    /// as in Linux (`EPT_VIOLATION`, unknown ones `VMX_REASON_N`); kinds by
    /// their lower-case name (`io-out`).
    public var name: String {
        isVMX ? VMXExitReason.name(code: code) : ExitKind(rawValue: UInt8(truncatingIfNeeded: key)).name
    }

    public static func < (a: ExitReason, b: ExitReason) -> Bool { a.key < b.key }
}

extension ExitReason: CustomStringConvertible {
    public var description: String { name }
}
