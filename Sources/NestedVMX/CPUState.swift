/// One segment register with its hidden part (SDM Vol. 3A 3.4.3, and the
/// VMCS access-rights format of SDM Vol. 3C 25.4.1, Table 25-2).
public struct SegmentState: Equatable, Sendable {
    public var selector: UInt16 = 0
    public var base: UInt64 = 0
    public var limit: UInt32 = 0xffff
    /// Segment type (bits 3:0 of the access rights).
    public var type: UInt8 = 0
    /// Descriptor type: 1 = code or data, 0 = system.
    public var s: Bool = true
    public var dpl: UInt8 = 0
    public var present: Bool = true
    public var avl: Bool = false
    /// 64-bit code segment (CS only).
    public var l: Bool = false
    /// Default operation size: 1 = 32-bit.
    public var db: Bool = false
    /// Granularity: limit in 4 KiB units.
    public var g: Bool = false
    public var unusable: Bool = false

    @inlinable
    public init(selector: UInt16 = 0, base: UInt64 = 0, limit: UInt32 = 0xffff, type: UInt8 = 0, s: Bool = true,
                dpl: UInt8 = 0, present: Bool = true, avl: Bool = false, l: Bool = false, db: Bool = false,
                g: Bool = false, unusable: Bool = false) {
        self.selector = selector; self.base = base; self.limit = limit; self.type = type; self.s = s
        self.dpl = dpl; self.present = present; self.avl = avl; self.l = l; self.db = db; self.g = g
        self.unusable = unusable
    }

    /// The 32-bit VMCS access-rights encoding (SDM Vol. 3C Table 25-2).
    public var accessRights: UInt32 {
        get {
            var v = UInt32(type & 0xf)
            if s { v |= 1 << 4 }
            v |= UInt32(dpl & 3) << 5
            if present { v |= 1 << 7 }
            if avl { v |= 1 << 12 }
            if l { v |= 1 << 13 }
            if db { v |= 1 << 14 }
            if g { v |= 1 << 15 }
            if unusable { v |= 1 << 16 }
            return v
        }
        set {
            type = UInt8(newValue & 0xf); s = newValue & (1 << 4) != 0; dpl = UInt8((newValue >> 5) & 3)
            present = newValue & (1 << 7) != 0; avl = newValue & (1 << 12) != 0; l = newValue & (1 << 13) != 0
            db = newValue & (1 << 14) != 0; g = newValue & (1 << 15) != 0; unusable = newValue & (1 << 16) != 0
        }
    }
}

/// A descriptor-table register (GDTR or IDTR).
public struct TableRegister: Equatable, Sendable {
    public var base: UInt64 = 0
    public var limit: UInt16 = 0xffff
    public init(base: UInt64 = 0, limit: UInt16 = 0xffff) { self.base = base; self.limit = limit }
}

/// The sixteen general-purpose registers, in the x86 encoding order
/// (RAX=0 ... R15=15), stored inline so copying never allocates.
public struct GeneralRegisters: Equatable, Sendable {
    private var r: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                    UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    public init() {}

    /// Register `i` (0-15); out-of-range indices read 0 and ignore writes.
    public subscript(i: Int) -> UInt64 {
        get {
            guard i >= 0 && i < 16 else { return 0 }
            return withUnsafeBytes(of: r) { $0.load(fromByteOffset: i * 8, as: UInt64.self) }
        }
        set {
            guard i >= 0 && i < 16 else { return }
            withUnsafeMutableBytes(of: &r) { $0.storeBytes(of: newValue, toByteOffset: i * 8, as: UInt64.self) }
        }
    }

    public static func == (a: Self, b: Self) -> Bool { (0..<16).allSatisfy { a[$0] == b[$0] } }

    public enum Name: Int, Sendable { case rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15 }
    public subscript(name: Name) -> UInt64 {
        get { self[name.rawValue] }
        set { self[name.rawValue] = newValue }
    }
}

/// The architectural state of a vCPU that VMX semantics read and change:
/// a plain value, so every rule can be tested without KVM.
public struct CPUState: Equatable, Sendable {
    public var gprs = GeneralRegisters()
    public var rip: UInt64 = 0
    public var rflags: UInt64 = 0x2
    public var cr0: UInt64 = 0x11
    public var cr2: UInt64 = 0
    public var cr3: UInt64 = 0
    public var cr4: UInt64 = 0
    public var efer: UInt64 = 0
    public var cs = SegmentState(), ds = SegmentState(), es = SegmentState(), fs = SegmentState()
    public var gs = SegmentState(), ss = SegmentState(), tr = SegmentState(), ldtr = SegmentState()
    public var gdtr = TableRegister(), idtr = TableRegister()
    /// Interruptibility: blocking by STI and by MOV SS / POP SS (SDM Vol. 3C 25.4.2).
    public var blockingBySTI = false
    public var blockingByMovSS = false
    /// An event whose delivery was under way when the vCPU stopped (KVM's
    /// "injected" event): it goes into the IDT-vectoring fields at a VM exit.
    public var eventInDelivery: DeliveredEvent?

    public init() {}

    /// Current privilege level: SS.DPL, which equals CS.DPL outside real mode
    /// (SDM Vol. 3A 5.5).
    public var cpl: UInt8 {
        if !protectedMode { return 0 }
        if virtual8086 { return 3 }
        return ss.dpl
    }

    public var protectedMode: Bool { cr0 & 1 != 0 }
    public var virtual8086: Bool { protectedMode && rflags & (1 << 17) != 0 }
    /// IA-32e mode active (EFER.LMA).
    public var longModeActive: Bool { efer & (1 << 10) != 0 }
    /// 64-bit mode: IA-32e mode with CS.L = 1.
    public var mode64: Bool { longModeActive && cs.l }
    /// Compatibility mode: IA-32e mode with a 16/32-bit code segment.
    public var compatibilityMode: Bool { longModeActive && !cs.l }

    /// `rip` wrapped at the current code size (SDM Vol. 1 3.5): 64 bits in
    /// 64-bit mode, else 32 or 16 by CS.D.
    public func wrappingRIP(_ rip: UInt64) -> UInt64 {
        mode64 ? rip : (cs.db ? rip & 0xffff_ffff : rip & 0xffff)
    }
}

/// The segment registers by their x86 encoding (ES=0 ... GS=5).
public enum SegmentRegister: Int, Sendable, CaseIterable {
    case es, cs, ss, ds, fs, gs
}

extension CPUState {
    public subscript(segment: SegmentRegister) -> SegmentState {
        get {
            switch segment { case .es: es; case .cs: cs; case .ss: ss; case .ds: ds; case .fs: fs; case .gs: gs }
        }
        set {
            switch segment {
            case .es: es = newValue; case .cs: cs = newValue; case .ss: ss = newValue
            case .ds: ds = newValue; case .fs: fs = newValue; case .gs: gs = newValue
            }
        }
    }
}

/// An event delivered through the IDT, in the terms of the
/// interruption-information formats: VM-exit interruption information and
/// IDT-vectoring information (SDM Vol. 3C 25.9.2, 25.9.3).
public struct DeliveredEvent: Equatable, Sendable {
    /// Bits 10:8 of the interruption-information formats.
    public enum Kind: UInt32, Sendable {
        case externalInterrupt = 0, nmi = 2, hardwareException = 3, softwareInterrupt = 4
        case privilegedSoftwareException = 5, softwareException = 6

        /// Types 4-6, raised by an instruction (INT n, INT1, INT3, INTO):
        /// their delivery pushes the address after it (SDM 25.8.3).
        public var isSoftware: Bool { rawValue >= 4 }
    }
    public var kind: Kind
    public var vector: UInt8
    public var errorCode: UInt32?

    public init(kind: Kind, vector: UInt8, errorCode: UInt32? = nil) {
        self.kind = kind; self.vector = vector; self.errorCode = errorCode
    }

    /// The event a valid interruption-information field describes (the
    /// VM-entry one, SDM 25.8.3), or nil; reserved types give nil.
    public init?(interruptionInformation info: UInt32, errorCode: UInt32) {
        guard info & (1 << 31) != 0, let kind = Kind(rawValue: (info >> 8) & 7) else { return nil }
        self.init(kind: kind, vector: UInt8(truncatingIfNeeded: info), errorCode: info & (1 << 11) != 0 ? errorCode : nil)
    }

    /// The field: vector, type, bit 11 when an error code is delivered,
    /// and bit 31 (valid).
    public var interruptionInformation: UInt32 {
        UInt32(vector) | kind.rawValue << 8 | (errorCode != nil ? 1 << 11 : 0) | 1 << 31
    }
}

extension CPUState {
    /// The CPU can take a maskable external interrupt at this instruction
    /// boundary: RFLAGS.IF set, no blocking by STI or MOV SS, and no event
    /// in delivery (SDM Vol. 3A 6.8.1, Vol. 3C 25.4.2).
    public var acceptsExternalInterrupt: Bool {
        rflags & 1 << 9 != 0 && !blockingBySTI && !blockingByMovSS && eventInDelivery == nil
    }
}
