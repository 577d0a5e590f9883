/// Walks L1's EPT for L2 (EPT12: L2-physical → L1-physical), SDM Vol. 3C
/// 29.3.2, with the misconfiguration rules of 29.3.3.1 and the violation
/// qualification of 28.2.1 (Table 28-7).
public enum EPTWalker {
    public struct Translation: Equatable, Sendable {
        /// L1-physical address of the L2-physical address walked.
        public var physical: UInt64
        /// The leaf's page: its L2-physical base, L1-physical base and size.
        public var pageBase: UInt64
        public var frame: UInt64
        public var pageSize: UInt64
        /// Effective permissions: the AND over every level.
        public var read: Bool, write: Bool, execute: Bool
        /// The leaf's dirty flag (bit 9), after this walk set it for a write;
        /// only meaningful when the EPTP enables accessed and dirty flags.
        public var dirty: Bool = false

        /// The L2-physical address that was walked.
        public var address: UInt64 { pageBase &+ (physical &- frame) }
    }

    /// Qualification bits 7 and 8 (Table 28-7): the guest-linear-address
    /// field is valid, and the access was to the translation of that linear
    /// address, not to a paging structure during its walk.
    public static let linearAccessBits: UInt64 = 1 << 7 | 1 << 8

    /// EPTP bit 6: accessed and dirty flags are kept (SDM 25.6.11, 29.3.5).
    public static func accessedDirtyEnabled(_ eptp: UInt64) -> Bool { eptp & (1 << 6) != 0 }

    public enum Failure: Error, Equatable, Sendable {
        /// Not present, or the access is not permitted: an EPT violation
        /// (exit reason 48) with this qualification.
        case violation(qualification: UInt64)
        /// A malformed entry: an EPT misconfiguration (exit reason 49).
        case misconfiguration
    }

    public struct Access: Equatable, Sendable {
        public var read: Bool, write: Bool, fetch: Bool
        public init(read: Bool = false, write: Bool = false, fetch: Bool = false) {
            self.read = read; self.write = write; self.fetch = fetch
        }
        /// Qualification bits 2:0: data read, data write, instruction fetch.
        var qualificationBits: UInt64 { (read ? 1 : 0) | (write ? 2 : 0) | (fetch ? 4 : 0) }
    }

    /// Translates `address` for `access` through the EPT rooted at `eptp`.
    /// `physicalAddressBits` is MAXPHYADDR; entries are read from L1 memory.
    /// With `setAccessedDirty` and A/D enabled in the EPTP, a successful walk
    /// sets the accessed flag (bit 8) in every entry it used and, for a write,
    /// the dirty flag (bit 9) in the leaf (SDM 29.3.5).
    public static func translate(_ address: UInt64, access: Access, eptp: UInt64, physicalAddressBits: Int,
                                 memory: some GuestMemoryAccess, setAccessedDirty: Bool = false) -> Result<Translation, Failure> {
        var walked: [(address: UInt64, entry: UInt64)] = []
        let addressMask: UInt64 = ((1 << UInt64(physicalAddressBits)) - 1) & ~UInt64(0xfff)
        let reservedHigh: UInt64 = ~((1 << UInt64(physicalAddressBits)) - 1) & 0x000f_ffff_ffff_ffff
        var table = eptp & addressMask
        var read = true, write = true, execute = true
        for level in stride(from: 4, through: 1, by: -1) {
            let shift = UInt64(12 + 9 * (level - 1))
            let index = (address >> shift) & 0x1ff
            // An entry outside RAM reads as all ones, as unbacked memory does: a misconfiguration.
            let entry = memory.load(UInt64.self, at: table + index * 8) ?? .max
            walked.append((table + index * 8, entry))
            let r = entry & 1 != 0, w = entry & 2 != 0, x = entry & 4 != 0
            if !r && !w && !x {
                return .failure(.violation(qualification: qualification(access, read, write, execute, present: false)))
            }
            // 29.3.3.1: write without read; execute-only, which L0 does not
            // advertise (IA32_VMX_EPT_VPID_CAP bit 0 is 0); reserved bits;
            // leaf memory type 2, 3 or 7.
            if w && !r { return .failure(.misconfiguration) }
            if x && !r && !w { return .failure(.misconfiguration) }
            if entry & reservedHigh != 0 { return .failure(.misconfiguration) }
            let large = entry & (1 << 7) != 0
            if large && level == 4 { return .failure(.misconfiguration) }
            let leaf = level == 1 || large
            if !leaf && entry & 0xf8 != 0 { return .failure(.misconfiguration) }     // bits 7:3 reserved in non-leaf
            if leaf {
                let memoryType = (entry >> 3) & 7
                if memoryType == 2 || memoryType == 3 || memoryType == 7 { return .failure(.misconfiguration) }
                if large {
                    let reservedLow: UInt64 = level == 3 ? 0x3fff_f000 : 0x1f_f000        // 29:12 or 20:12 (Tables 29-2, 29-4)
                    if entry & reservedLow != 0 { return .failure(.misconfiguration) }
                }
            }
            read = read && r; write = write && w; execute = execute && x
            if leaf {
                let size: UInt64 = 1 << shift
                let frame = entry & addressMask & ~(size - 1)
                guard (!access.read || read) && (!access.write || write) && (!access.fetch || execute) else {
                    return .failure(.violation(qualification: qualification(access, read, write, execute, present: true)))
                }
                var dirty = entry & (1 << 9) != 0
                if setAccessedDirty && accessedDirtyEnabled(eptp) {
                    for (i, w) in walked.enumerated() {
                        var updated = w.entry | 1 << 8
                        if i == walked.count - 1 && access.write { updated |= 1 << 9 }
                        if updated != w.entry { _ = memory.store(updated, at: w.address) }
                    }
                    dirty = dirty || access.write
                }
                return .success(Translation(physical: frame | (address & (size - 1)), pageBase: address & ~(size - 1),
                                            frame: frame, pageSize: size, read: read, write: write, execute: execute,
                                            dirty: dirty))
            }
            table = entry & addressMask
        }
        return .failure(.misconfiguration)   // unreachable: level 1 is always a leaf
    }

    /// The lowest leaf of the EPT rooted at `eptp` that maps L2-physical
    /// addresses at or above `address`, as the range it covers from there
    /// (`start` ≥ `address`, `end` the leaf's end), or nil when there is none
    /// below 2^48. An entry counts as present when any of bits 2:0 is set
    /// (SDM 29.3.2); entries are not checked further, so `translate` on
    /// `start` still decides whether the leaf maps anything or is
    /// misconfigured. Subtrees with nothing present are skipped whole. For
    /// building EPT02 from all of EPT12 at once (docs/ARCHITECTURE.md, "EPT02").
    public static func nextLeaf(atOrAbove address: UInt64, eptp: UInt64, physicalAddressBits: Int,
                                memory: some GuestMemoryAccess) -> (start: UInt64, end: UInt64)? {
        let addressMask: UInt64 = ((1 << UInt64(physicalAddressBits)) - 1) & ~UInt64(0xfff)
        func search(_ table: UInt64, level: Int, regionBase: UInt64, from: UInt64) -> (start: UInt64, end: UInt64)? {
            let span: UInt64 = 1 << UInt64(12 + 9 * (level - 1))
            var index = (from - regionBase) / span
            while index < 512 {
                let start = regionBase + index * span
                let lower = max(from, start)
                if let entry = memory.load(UInt64.self, at: table + index * 8), entry & 7 != 0 {
                    if level == 1 || entry & (1 << 7) != 0 { return (lower, start + span) }
                    if let found = search(entry & addressMask, level: level - 1, regionBase: start, from: lower) { return found }
                }
                index += 1
            }
            return nil
        }
        guard address < 1 << 48 else { return nil }
        return search(eptp & addressMask, level: 4, regionBase: 0, from: address)
    }

    /// Exit qualification for an EPT violation (Table 28-7): the access
    /// (bits 2:0), the permissions of the translation so far (bits 5:3),
    /// and "guest-physical address valid from a linear address" left 0.
    static func qualification(_ access: Access, _ r: Bool, _ w: Bool, _ x: Bool, present: Bool) -> UInt64 {
        var q = access.qualificationBits
        if present {
            q |= (r ? 1 << 3 : 0) | (w ? 1 << 4 : 0) | (x ? 1 << 5 : 0)
        }
        return q
    }
}
