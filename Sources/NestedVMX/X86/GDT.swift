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
