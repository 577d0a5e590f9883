/// Linear-to-physical translation by walking the guest's paging structures
/// (SDM Vol. 3A chapter 4): paging off, 32-bit paging (4.3), PAE paging
/// (4.4) and 4-level/5-level paging (4.5), with the access-rights rules of
/// 4.6, the #PF error code of 4.7 and the accessed/dirty flags of 4.8.
///
/// Simplifications (documented choices):
/// - No TLBs or paging-structure caches: every call walks memory.
/// - PAE paging reads the four PDPTEs from CR3 at walk time instead of
///   using the PDPTE registers loaded by MOV CR3 (4.4.1). A not-present
///   PDPTE gives #PF (P=0); a PDPTE with reserved bits set gives #PF with
///   RSVD (hardware would have raised #GP at the MOV to CR3).
/// - 32-bit paging: 4 MiB pages honour PSE-36 (4.3, Table 4-4): PDE bits
///   20:13 are physical-address bits 39:32; bit 21 and, when MAXPHYADDR < 40,
///   bits 20:(MAXPHYADDR-19) are reserved.
/// - 1 GiB pages are assumed supported (CPUID.80000001H:EDX.Page1GB = 1).
/// - 5-level paging (CR4.LA57) is walked like 4-level with a PML5 on top.
/// - The linear address is not checked for canonicality here (the
///   segmentation layer does that); only the bits the walk uses matter.
/// - SMEP, SMAP and protection keys are not enforced (CR4.SMEP does set
///   the I/D error-code bit for fetches, as 4.7 specifies).
/// - Accessed and dirty flags are set only when the whole translation
///   succeeds (no flags are set by a faulting walk), without atomicity.
/// - A paging-structure entry outside RAM (memory.load returns nil) reads
///   as all ones, as unbacked memory does on this platform.
public enum PageWalker {
    static let cr0PG: UInt64 = 1 << 31
    static let cr0WP: UInt64 = 1 << 16
    static let cr4PSE: UInt64 = 1 << 4
    static let cr4PAE: UInt64 = 1 << 5
    static let cr4LA57: UInt64 = 1 << 12
    static let cr4SMEP: UInt64 = 1 << 20
    static let eferNXE: UInt64 = 1 << 11

    // Paging-structure entry bits (SDM Vol. 3A Tables 4-4 ... 4-20).
    static let present: UInt64 = 1 << 0
    static let writable: UInt64 = 1 << 1
    static let userBit: UInt64 = 1 << 2
    static let accessed: UInt64 = 1 << 5
    static let dirty: UInt64 = 1 << 6
    static let pageSize: UInt64 = 1 << 7
    static let executeDisable: UInt64 = 1 << 63

    // #PF error-code bits (SDM Vol. 3A 4.7, Figure 4-12).
    public static let errorPresent: UInt32 = 1 << 0
    public static let errorWrite: UInt32 = 1 << 1
    public static let errorUser: UInt32 = 1 << 2
    public static let errorReserved: UInt32 = 1 << 3
    public static let errorFetch: UInt32 = 1 << 4

    /// One paging-structure entry used by a walk.
    struct Step {
        var address: UInt64
        var value: UInt64
        var wide: Bool                 // 8-byte entry (PAE / 4-level) vs 4-byte (32-bit paging)
        var hasAccessedFlag = true     // PAE PDPTEs have none (Table 4-8)
    }

    /// The entries a walk used, in order: at most five (a PML5 walk), kept
    /// inline so a walk allocates nothing (it runs for every guest-linear
    /// access L0 makes, docs/PERFORMANCE.md).
    struct Steps {
        private var storage: (Step?, Step?, Step?, Step?, Step?) = (nil, nil, nil, nil, nil)
        private(set) var count = 0

        mutating func append(_ step: Step) {
            switch count {
            case 0: storage.0 = step
            case 1: storage.1 = step
            case 2: storage.2 = step
            case 3: storage.3 = step
            default: storage.4 = step
            }
            count += 1
        }

        subscript(i: Int) -> Step {
            switch i {
            case 0: storage.0!
            case 1: storage.1!
            case 2: storage.2!
            case 3: storage.3!
            default: storage.4!
            }
        }
    }

    struct Walk {
        var steps = Steps()
        var writable = true
        var user = true
        var executeDisable = false
        var physical: UInt64 = 0
    }

    enum Failure: Error { case notPresent, reserved }

    /// Translates `linear` for `access`. `physicalAddressBits` is MAXPHYADDR
    /// (CPUID.80000008H:EAX[7:0]); bits at and above it in paging entries
    /// are reserved. On failure returns #PF with the error code of SDM 4.7
    /// and `faultAddress` = `linear` (the value for CR2).
    public static func translate(_ linear: UInt64, access: MemoryAccess, state: CPUState,
                                 memory: some GuestMemoryAccess, setAccessedDirty: Bool = true,
                                 physicalAddressBits: Int = 46) -> Result<UInt64, X86Exception> {
        guard state.cr0 & cr0PG != 0 else {
            // Paging disabled (4.1.1): physical = linear (32-bit outside IA-32e mode).
            return .success(state.longModeActive ? linear : linear & 0xFFFF_FFFF)
        }
        let maxPhys = min(max(physicalAddressBits, 32), 52)
        let pae = state.cr4 & cr4PAE != 0
        let nxEnabled = state.efer & eferNXE != 0 && (pae || state.longModeActive)

        var code: UInt32 = 0
        if access.write { code |= errorWrite }
        if access.user { code |= errorUser }
        if access.fetch && (nxEnabled || state.cr4 & cr4SMEP != 0) { code |= errorFetch }

        let walk: Walk
        do throws(Failure) {
            if state.longModeActive {
                walk = try walkLong(linear, state: state, memory: memory, maxPhys: maxPhys)
            } else if pae {
                walk = try walkPAE(linear, state: state, memory: memory, maxPhys: maxPhys)
            } else {
                walk = try walk32(linear, state: state, memory: memory, maxPhys: maxPhys)
            }
        } catch {
            switch error {
            case .notPresent:
                return .failure(.pageFault(errorCode: code, address: linear))
            case .reserved:
                return .failure(.pageFault(errorCode: code | errorPresent | errorReserved, address: linear))
            }
        }

        // Access rights (SDM Vol. 3A 4.6.1). Supervisor accesses may touch
        // user pages (SMAP/SMEP not modelled); supervisor writes to read-only
        // pages are allowed only with CR0.WP = 0.
        var violation = false
        if access.user && !walk.user { violation = true }
        if access.write && !walk.writable && (access.user || state.cr0 & cr0WP != 0) { violation = true }
        if access.fetch && nxEnabled && walk.executeDisable { violation = true }
        if violation {
            return .failure(.pageFault(errorCode: code | errorPresent, address: linear))
        }

        if setAccessedDirty { updateFlags(walk, write: access.write, memory: memory) }
        return .success(walk.physical)
    }

    /// Sets the accessed flag of every entry used and the dirty flag of the
    /// entry that maps the page on a write (SDM Vol. 3A 4.8).
    static func updateFlags(_ walk: Walk, write: Bool, memory: some GuestMemoryAccess) {
        for i in 0..<walk.steps.count {
            let step = walk.steps[i]
            guard step.hasAccessedFlag else { continue }
            var v = step.value | accessed
            if write && i == walk.steps.count - 1 { v |= dirty }
            guard v != step.value else { continue }
            if step.wide {
                _ = memory.store(v, at: step.address)
            } else {
                _ = memory.store(UInt32(truncatingIfNeeded: v), at: step.address)
            }
        }
    }

    static func readEntry(_ address: UInt64, wide: Bool, memory: some GuestMemoryAccess) -> UInt64 {
        if wide { return memory.load(UInt64.self, at: address) ?? ~0 }
        return UInt64(memory.load(UInt32.self, at: address) ?? ~0)
    }

    /// Mask of bits `hi:lo` inclusive.
    static func bits(_ hi: Int, _ lo: Int) -> UInt64 {
        guard hi >= lo else { return 0 }
        let top: UInt64 = hi >= 63 ? ~0 : (UInt64(1) << UInt64(hi + 1)) - 1
        return top & ~((UInt64(1) << UInt64(lo)) - 1)
    }

    static func accumulate(_ walk: inout Walk, _ entry: UInt64) {
        if entry & writable == 0 { walk.writable = false }
        if entry & userBit == 0 { walk.user = false }
        if entry & executeDisable != 0 { walk.executeDisable = true }
    }

    // MARK: 32-bit paging (SDM Vol. 3A 4.3)

    static func walk32(_ linear: UInt64, state: CPUState, memory: some GuestMemoryAccess,
                       maxPhys: Int) throws(Failure) -> Walk {
        var walk = Walk()
        let la = linear & 0xFFFF_FFFF
        let pdeAddress = (state.cr3 & 0xFFFF_F000) + ((la >> 22) & 0x3FF) * 4
        let pde = readEntry(pdeAddress, wide: false, memory: memory)
        guard pde & present != 0 else { throw .notPresent }
        walk.steps.append(Step(address: pdeAddress, value: pde, wide: false))
        accumulate(&walk, pde)
        if pde & pageSize != 0 && state.cr4 & cr4PSE != 0 {
            // 4 MiB page (Table 4-4): bit 21 reserved; PSE-36 bits 20:13 = PA 39:32.
            var reserved = bits(21, 21)
            if maxPhys < 40 { reserved |= bits(20, maxPhys - 19) }
            guard pde & reserved == 0 else { throw .reserved }
            let frame = (pde & 0xFFC0_0000) | (((pde >> 13) & 0xFF) << 32)
            walk.physical = frame | (la & 0x3F_FFFF)
            return walk
        }
        let pteAddress = (pde & 0xFFFF_F000) + ((la >> 12) & 0x3FF) * 4
        let pte = readEntry(pteAddress, wide: false, memory: memory)
        guard pte & present != 0 else { throw .notPresent }
        walk.steps.append(Step(address: pteAddress, value: pte, wide: false))
        accumulate(&walk, pte)
        walk.physical = (pte & 0xFFFF_F000) | (la & 0xFFF)
        return walk
    }

    // MARK: PAE paging (SDM Vol. 3A 4.4)

    static func walkPAE(_ linear: UInt64, state: CPUState, memory: some GuestMemoryAccess,
                        maxPhys: Int) throws(Failure) -> Walk {
        let la = linear & 0xFFFF_FFFF
        // PDPTE i at CR3[31:5] + 8*i, i = linear bits 31:30 (4.4.1, Table 4-8:
        // bits 2:1, 8:5 and 63:MAXPHYADDR reserved).
        let pdpteAddress = (state.cr3 & 0xFFFF_FFE0) + ((la >> 30) & 3) * 8
        let pdpte = readEntry(pdpteAddress, wide: true, memory: memory)
        guard pdpte & present != 0 else { throw .notPresent }
        guard pdpte & (bits(63, maxPhys) | bits(2, 1) | bits(8, 5)) == 0 else { throw .reserved }
        var walk = Walk()
        walk.steps.append(Step(address: pdpteAddress, value: pdpte, wide: true, hasAccessedFlag: false))
        // PDEs and PTEs: bits 62:MAXPHYADDR reserved; XD reserved without NXE (Tables 4-9..4-11).
        var reserved = bits(62, maxPhys)
        if state.efer & eferNXE == 0 { reserved |= executeDisable }
        let table = pdpte & bits(maxPhys - 1, 12)
        try walkTables(la, from: table, topShift: 21, largeAt: 1 << 21, reserved: reserved,
                       maxPhys: maxPhys, memory: memory, into: &walk)
        return walk
    }

    // MARK: 4-level and 5-level paging (SDM Vol. 3A 4.5)

    static func walkLong(_ linear: UInt64, state: CPUState, memory: some GuestMemoryAccess,
                         maxPhys: Int) throws(Failure) -> Walk {
        var walk = Walk()
        // Bits 51:MAXPHYADDR reserved in every entry; XD reserved without NXE (Tables 4-14..4-20).
        var reserved = bits(51, maxPhys)
        if state.efer & eferNXE == 0 { reserved |= executeDisable }
        let topShift = state.cr4 & cr4LA57 != 0 ? 48 : 39
        try walkTables(linear, from: state.cr3 & bits(maxPhys - 1, 12), topShift: topShift, largeAt: 1 << 30 | 1 << 21,
                       reserved: reserved, maxPhys: maxPhys, memory: memory, into: &walk)
        return walk
    }

    /// Walks 8-byte-entry tables of 512 entries. Each level's index starts
    /// at a shift, from `topShift` down by 9 to 12; `largeAt` has bit
    /// `shift` set for the levels where PS = 1 maps a page (at the other
    /// non-leaf levels PS is reserved, e.g. PML4E/PML5E bit 7).
    static func walkTables(_ linear: UInt64, from root: UInt64, topShift: Int, largeAt: UInt64,
                           reserved: UInt64, maxPhys: Int, memory: some GuestMemoryAccess,
                           into walk: inout Walk) throws(Failure) {
        var table = root
        for shift in stride(from: topShift, through: 12, by: -9) {
            let address = table + ((linear >> UInt64(shift)) & 0x1FF) * 8
            let entry = readEntry(address, wide: true, memory: memory)
            guard entry & present != 0 else { throw .notPresent }
            guard entry & reserved == 0 else { throw .reserved }
            let isLeaf: Bool
            if shift == 12 {
                isLeaf = true
            } else if entry & pageSize != 0 {
                guard largeAt & 1 << UInt64(shift) != 0 else { throw .reserved }
                // Large page: bits (shift-1):13 reserved (bit 12 is PAT).
                guard entry & bits(shift - 1, 13) == 0 else { throw .reserved }
                isLeaf = true
            } else {
                isLeaf = false
            }
            walk.steps.append(Step(address: address, value: entry, wide: true))
            accumulate(&walk, entry)
            if isLeaf {
                walk.physical = (entry & bits(maxPhys - 1, shift)) | (linear & bits(shift - 1, 0))
                return
            }
            table = entry & bits(maxPhys - 1, 12)
        }
    }
}
