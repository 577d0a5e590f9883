import NestedVMX

/// A consistent CPU state drawn from a fuzz input: one of the modes a KVM
/// vCPU can really be in (KVM refuses the inconsistent ones), with random
/// registers, privilege level, flags and page-table root.
enum FuzzCPU {
    /// The guest RAM every CPU-state target uses: 16 pages, filled from the input.
    static let pages = 16

    static func state(_ input: inout FuzzInput) -> CPUState {
        var s = CPUState()
        for i in 0..<16 { s.gprs[i] = input.integer() }
        s.rip = input.integer()
        s.cr3 = UInt64(input.u8()) % UInt64(pages) << 12
        let cpl = input.u8() & 3
        let flat = SegmentState(selector: 0x10 | UInt16(cpl), limit: 0xffff_ffff, type: 0x3, dpl: cpl, db: true, g: true)
        for seg in [SegmentRegister.ds, .es, .ss, .fs, .gs] { s[seg] = flat }
        s.cs = SegmentState(selector: 0x08 | UInt16(cpl), limit: 0xffff_ffff, type: 0xb, dpl: cpl, db: true, g: true)
        let paging = input.u8()
        s.cr0 = 0x11 | (paging & 1 != 0 ? 1 << 31 : 0) | (paging & 2 != 0 ? 1 << 16 : 0)          // PE ET, PG, WP
        s.cr4 = (paging & 4 != 0 ? 0x20 : 0) | (paging & 8 != 0 ? 0x10 : 0)                         // PAE, PSE
            | (paging & 16 != 0 ? 1 << 20 : 0) | (paging & 32 != 0 ? 1 << 21 : 0)                     // SMEP, SMAP
        s.efer = paging & 64 != 0 ? 0x800 : 0                                                        // NXE
        s.rflags = 0x2 | UInt64(input.u8() & 0xd5) | (paging & 128 != 0 ? 1 << 18 : 0)               // arithmetic flags, AC
        switch input.u8() % 5 {
        case 0:                                                   // 64-bit mode: 4-level paging
            s.cr0 |= 1 << 31; s.cr4 |= 0x20; s.efer |= 0x500; s.cs.l = true; s.cs.db = false
        case 1:                                                   // compatibility mode
            s.cr0 |= 1 << 31; s.cr4 |= 0x20; s.efer |= 0x500
        case 2:                                                   // 32-bit protected mode, any paging
            break
        case 3:                                                   // virtual-8086 mode: CPL 3, 16-bit segments
            s.rflags |= 1 << 17
            for seg in SegmentRegister.allCases {
                let selector: UInt16 = input.integer()
                s[seg] = SegmentState(selector: selector, base: UInt64(selector) << 4, limit: 0xffff, type: 0x3, dpl: 3)
            }
        default:                                                  // real mode
            s.cr0 = 0x10; s.cr4 = 0; s.efer = 0
            for seg in SegmentRegister.allCases {
                let selector: UInt16 = input.integer()
                s[seg] = SegmentState(selector: selector, base: UInt64(selector) << 4, limit: 0xffff, type: 0x3)
            }
        }
        return s
    }

    /// Guest RAM with `bytes` from address 0 (the rest zero).
    static func memory(_ bytes: [UInt8]) -> ArrayMemory {
        let m = ArrayMemory(size: pages << 12)
        m.bytes.replaceSubrange(0..<min(bytes.count, m.bytes.count), with: bytes.prefix(m.bytes.count))
        return m
    }
}
