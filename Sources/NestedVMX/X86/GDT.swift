import VMXArch

/// Segment descriptors in a guest's GDT (SDM Vol. 3A 3.4.5).
public enum GDT {
    /// The 8-byte descriptor for `selector`, read through the guest's
    /// paging; nil for an LDT selector, one beyond the limit, or unreadable.
    public static func descriptor(_ selector: UInt64, cpu: CPUState, memory: some GuestMemoryAccess) -> UInt64? {
        let offset = selector & 0xfff8
        guard selector & 4 == 0, offset + 7 <= UInt64(cpu.gdtr.limit),
              case let .success(bytes) = PageWalker.readLinear(cpu.gdtr.base &+ offset, count: 8, access: MemoryAccess(),
                                                               state: cpu, memory: memory) else { return nil }
        return bytes.littleEndian()
    }

    /// The 32-bit base address a descriptor holds.
    public static func base(of descriptor: UInt64) -> UInt64 {
        ((descriptor >> 16) & 0xff_ffff) | ((descriptor >> 56) & 0xff) << 24
    }
}

/// An interrupt or trap gate of the IDT (SDM Vol. 3A 6.11, 6.14.1): 8 bytes
/// in protected mode, 16 in IA-32e mode (`high` the second quadword).
public struct IDTGate: Equatable, Sendable {
    /// The handler's offset in its code segment.
    public var offset: UInt64
    public var selector: UInt16
    /// 0xE interrupt gate, 0xF trap gate (32- or 64-bit); others are not handlers here.
    public var type: UInt64
    public var dpl: UInt8
    public var present: Bool
    /// The IST index (IA-32e mode), 0 for none.
    public var ist: Int

    public init(low: UInt64, high: UInt64? = nil) {
        offset = (low & 0xffff) | ((low >> 32) & 0xffff_0000) | ((high ?? 0) & 0xffff_ffff) << 32
        selector = UInt16(truncatingIfNeeded: low >> 16)
        type = (low >> 40) & 0xf
        dpl = UInt8((low >> 45) & 3)
        present = low & 1 << 47 != 0
        ist = high == nil ? 0 : Int((low >> 32) & 7)
    }

    /// An interrupt or trap gate, the only kinds modelled.
    public var isInterruptOrTrapGate: Bool { type == 0xe || type == 0xf }
}
