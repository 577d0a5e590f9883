import VMXArch

/// Hyper-V's enlightened VMCS, version 1 (Hypervisor Top-Level Functional
/// Specification, "Nested Virtualization": "Enlightened VMCS", "Clean
/// Fields"; the layout is the TLFS data type HV_VMX_ENLIGHTENED_VMCS).
///
/// L1 keeps its VMCS for L2 in an ordinary 4 KiB page of its memory, names
/// it in its VP assist page (`HyperV.VPAssistPage`) and writes fields as
/// memory: no VMPTRLD, VMREAD or VMWRITE. VMLAUNCH and VMRESUME still trap.
/// At entry L0 reads only the field groups whose clean bit is clear; at
/// exit it writes the exit information and L2's state into the page
/// (docs/EVMCS.md).
///
/// The table below is the layout as (VMCS field, byte offset, width,
/// clean-field group), checked against the specification's offsets by
/// `EnlightenedVMCSTests`. Fields of Appendix B the layout has no room for
/// (the VMX-preemption timer value, posted interrupts, VM functions, ...)
/// keep their VMCS12 value, which is zero for an enlightened VMCS.
public enum EnlightenedVMCS {
    /// The version this L0 implements, in the first 4 bytes of the page
    /// ("VersionNumber") and in CPUID 0x4000000A EAX (TLFS "Feature
    /// Discovery").
    public static let version: UInt32 = 1
    public static let versionOffset: UInt64 = 0
    /// The VMX-abort indicator, at the same offset as in a VMCS (SDM 28.7).
    public static let abortOffset: UInt64 = 4
    /// The synthetic "CleanFields" word.
    public static let cleanFieldsOffset: UInt64 = 824
    /// The defined part of the structure; the rest of the page is unused.
    public static let size = 1024
    public static let pageSize = 4096

    /// The clean-field groups (TLFS HV_VMX_ENLIGHTENED_CLEAN_FIELD_*). A set
    /// bit tells L0 that L1 has not changed the group's fields since the
    /// last VM exit, so a cached copy may be used.
    public struct CleanFields: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let ioBitmap = CleanFields(rawValue: 1 << 0)
        public static let msrBitmap = CleanFields(rawValue: 1 << 1)
        public static let controlGroup2 = CleanFields(rawValue: 1 << 2)
        public static let controlGroup1 = CleanFields(rawValue: 1 << 3)
        public static let controlProcessor = CleanFields(rawValue: 1 << 4)
        public static let controlEvent = CleanFields(rawValue: 1 << 5)
        public static let controlEntry = CleanFields(rawValue: 1 << 6)
        public static let controlException = CleanFields(rawValue: 1 << 7)
        /// "CRDR": the CR masks, read shadows, guest CRs and DR7.
        public static let controlAndDebugRegisters = CleanFields(rawValue: 1 << 8)
        /// "CONTROL_XLAT": EPTP and VPID.
        public static let controlTranslation = CleanFields(rawValue: 1 << 9)
        public static let guestBasic = CleanFields(rawValue: 1 << 10)
        public static let guestGroup1 = CleanFields(rawValue: 1 << 11)
        public static let guestGroup2 = CleanFields(rawValue: 1 << 12)
        public static let hostPointer = CleanFields(rawValue: 1 << 13)
        public static let hostGroup1 = CleanFields(rawValue: 1 << 14)
        public static let enlightenmentsControl = CleanFields(rawValue: 1 << 15)
        /// Bits 15:0. Also the "group" of the fields the specification gives
        /// no group of their own (the MSR-list addresses and counts, the
        /// CR3-target fields, the #PF error-code mask and match): L1 clears
        /// every bit when it writes one of them, so L0 reloads them whenever
        /// any bit is clear.
        public static let all = CleanFields(rawValue: 0xffff)
    }

    /// Where one VMCS field lives in the page.
    public struct Slot: Sendable, Equatable {
        public let field: VMCSField
        public let offset: Int
        /// Bytes: 2, 4 or 8.
        public let width: Int
        /// The clean bits that cover it; empty: none does, so L0 reads it at
        /// every entry (GUEST_RIP, the TPR threshold, and the exit
        /// information, which L1 does not write).
        public let group: CleanFields

        init(_ field: VMCSField, _ offset: Int, _ width: Int, _ group: CleanFields) {
            self.field = field; self.offset = offset; self.width = width; self.group = group
        }

        /// The field is read at an entry whose clean-field word is `clean`:
        /// always when no bit covers it, else when one of its bits is clear.
        public func isDirty(_ clean: CleanFields) -> Bool {
            group.isEmpty || !clean.isSuperset(of: group)
        }

        /// An exit can change it: exit information (SDM 28.2), guest state
        /// (28.3), and the two entry fields L0 updates: the valid bit of
        /// the entry interruption information, cleared by the entry (27.6),
        /// and "IA-32e mode guest", which follows IA32_EFER.LMA (28.3.3).
        public var isWrittenAtExit: Bool {
            field.kind == .exitInformation || field.kind == .guestState
                || field == .entryControls || field == .entryInterruptionInfo
        }
    }

    /// The layout, in offset order.
    public static let layout: [Slot] = [
        Slot(.hostESSelector, 8, 2, .hostGroup1),
        Slot(.hostCSSelector, 10, 2, .hostGroup1),
        Slot(.hostSSSelector, 12, 2, .hostGroup1),
        Slot(.hostDSSelector, 14, 2, .hostGroup1),
        Slot(.hostFSSelector, 16, 2, .hostGroup1),
        Slot(.hostGSSelector, 18, 2, .hostGroup1),
        Slot(.hostTRSelector, 20, 2, .hostGroup1),
        Slot(.hostIA32PAT, 24, 8, .hostGroup1),
        Slot(.hostIA32EFER, 32, 8, .hostGroup1),
        Slot(.hostCR0, 40, 8, .hostGroup1),
        Slot(.hostCR3, 48, 8, .hostGroup1),
        Slot(.hostCR4, 56, 8, .hostGroup1),
        Slot(.hostIA32SysenterESP, 64, 8, .hostGroup1),
        Slot(.hostIA32SysenterEIP, 72, 8, .hostGroup1),
        Slot(.hostRIP, 80, 8, .hostGroup1),
        Slot(.hostIA32SysenterCS, 88, 4, .hostGroup1),
        Slot(.pinBasedControls, 92, 4, .controlGroup1),
        Slot(.exitControls, 96, 4, .controlGroup1),
        Slot(.secondaryProcessorBasedControls, 100, 4, .controlGroup1),
        Slot(.ioBitmapA, 104, 8, .ioBitmap),
        Slot(.ioBitmapB, 112, 8, .ioBitmap),
        Slot(.msrBitmap, 120, 8, .msrBitmap),
        Slot(.guestESSelector, 128, 2, .guestGroup2),
        Slot(.guestCSSelector, 130, 2, .guestGroup2),
        Slot(.guestSSSelector, 132, 2, .guestGroup2),
        Slot(.guestDSSelector, 134, 2, .guestGroup2),
        Slot(.guestFSSelector, 136, 2, .guestGroup2),
        Slot(.guestGSSelector, 138, 2, .guestGroup2),
        Slot(.guestLDTRSelector, 140, 2, .guestGroup2),
        Slot(.guestTRSelector, 142, 2, .guestGroup2),
        Slot(.guestESLimit, 144, 4, .guestGroup2),
        Slot(.guestCSLimit, 148, 4, .guestGroup2),
        Slot(.guestSSLimit, 152, 4, .guestGroup2),
        Slot(.guestDSLimit, 156, 4, .guestGroup2),
        Slot(.guestFSLimit, 160, 4, .guestGroup2),
        Slot(.guestGSLimit, 164, 4, .guestGroup2),
        Slot(.guestLDTRLimit, 168, 4, .guestGroup2),
        Slot(.guestTRLimit, 172, 4, .guestGroup2),
        Slot(.guestGDTRLimit, 176, 4, .guestGroup2),
        Slot(.guestIDTRLimit, 180, 4, .guestGroup2),
        Slot(.guestESAccessRights, 184, 4, .guestGroup2),
        Slot(.guestCSAccessRights, 188, 4, .guestGroup2),
        Slot(.guestSSAccessRights, 192, 4, .guestGroup2),
        Slot(.guestDSAccessRights, 196, 4, .guestGroup2),
        Slot(.guestFSAccessRights, 200, 4, .guestGroup2),
        Slot(.guestGSAccessRights, 204, 4, .guestGroup2),
        Slot(.guestLDTRAccessRights, 208, 4, .guestGroup2),
        Slot(.guestTRAccessRights, 212, 4, .guestGroup2),
        Slot(.guestESBase, 216, 8, .guestGroup2),
        Slot(.guestCSBase, 224, 8, .guestGroup2),
        Slot(.guestSSBase, 232, 8, .guestGroup2),
        Slot(.guestDSBase, 240, 8, .guestGroup2),
        Slot(.guestFSBase, 248, 8, .guestGroup2),
        Slot(.guestGSBase, 256, 8, .guestGroup2),
        Slot(.guestLDTRBase, 264, 8, .guestGroup2),
        Slot(.guestTRBase, 272, 8, .guestGroup2),
        Slot(.guestGDTRBase, 280, 8, .guestGroup2),
        Slot(.guestIDTRBase, 288, 8, .guestGroup2),
        Slot(.exitMSRStoreAddress, 320, 8, .all),
        Slot(.exitMSRLoadAddress, 328, 8, .all),
        Slot(.entryMSRLoadAddress, 336, 8, .all),
        Slot(.cr3TargetValue0, 344, 8, .all),
        Slot(.cr3TargetValue1, 352, 8, .all),
        Slot(.cr3TargetValue2, 360, 8, .all),
        Slot(.cr3TargetValue3, 368, 8, .all),
        Slot(.pageFaultErrorCodeMask, 376, 4, .all),
        Slot(.pageFaultErrorCodeMatch, 380, 4, .all),
        Slot(.cr3TargetCount, 384, 4, .all),
        Slot(.exitMSRStoreCount, 388, 4, .all),
        Slot(.exitMSRLoadCount, 392, 4, .all),
        Slot(.entryMSRLoadCount, 396, 4, .all),
        Slot(.tscOffset, 400, 8, .controlGroup2),
        Slot(.virtualAPICAddress, 408, 8, .controlGroup2),
        Slot(.vmcsLinkPointer, 416, 8, .guestGroup1),
        Slot(.guestIA32Debugctl, 424, 8, .guestGroup1),
        Slot(.guestIA32PAT, 432, 8, .guestGroup1),
        Slot(.guestIA32EFER, 440, 8, .guestGroup1),
        Slot(.guestPDPTE0, 448, 8, .guestGroup1),
        Slot(.guestPDPTE1, 456, 8, .guestGroup1),
        Slot(.guestPDPTE2, 464, 8, .guestGroup1),
        Slot(.guestPDPTE3, 472, 8, .guestGroup1),
        Slot(.guestPendingDebugExceptions, 480, 8, .guestGroup1),
        Slot(.guestIA32SysenterESP, 488, 8, .guestGroup1),
        Slot(.guestIA32SysenterEIP, 496, 8, .guestGroup1),
        Slot(.guestActivityState, 504, 4, .guestGroup1),
        Slot(.guestIA32SysenterCS, 508, 4, .guestGroup1),
        Slot(.cr0GuestHostMask, 512, 8, .controlAndDebugRegisters),
        Slot(.cr4GuestHostMask, 520, 8, .controlAndDebugRegisters),
        Slot(.cr0ReadShadow, 528, 8, .controlAndDebugRegisters),
        Slot(.cr4ReadShadow, 536, 8, .controlAndDebugRegisters),
        Slot(.guestCR0, 544, 8, .controlAndDebugRegisters),
        Slot(.guestCR3, 552, 8, .controlAndDebugRegisters),
        Slot(.guestCR4, 560, 8, .controlAndDebugRegisters),
        Slot(.guestDR7, 568, 8, .controlAndDebugRegisters),
        Slot(.hostFSBase, 576, 8, .hostPointer),
        Slot(.hostGSBase, 584, 8, .hostPointer),
        Slot(.hostTRBase, 592, 8, .hostPointer),
        Slot(.hostGDTRBase, 600, 8, .hostPointer),
        Slot(.hostIDTRBase, 608, 8, .hostPointer),
        Slot(.hostRSP, 616, 8, .hostPointer),
        Slot(.eptPointer, 624, 8, .controlTranslation),
        Slot(.virtualProcessorID, 632, 2, .controlTranslation),
        Slot(.guestPhysicalAddress, 680, 8, []),
        Slot(.vmInstructionError, 688, 4, []),
        Slot(.exitReason, 692, 4, []),
        Slot(.exitInterruptionInfo, 696, 4, []),
        Slot(.exitInterruptionErrorCode, 700, 4, []),
        Slot(.idtVectoringInfo, 704, 4, []),
        Slot(.idtVectoringErrorCode, 708, 4, []),
        Slot(.exitInstructionLength, 712, 4, []),
        Slot(.vmxInstructionInfo, 716, 4, []),
        Slot(.exitQualification, 720, 8, []),
        Slot(.ioRCX, 728, 8, []),
        Slot(.ioRSI, 736, 8, []),
        Slot(.ioRDI, 744, 8, []),
        Slot(.ioRIP, 752, 8, []),
        Slot(.guestLinearAddress, 760, 8, []),
        Slot(.guestRSP, 768, 8, .guestBasic),
        Slot(.guestRFLAGS, 776, 8, .guestBasic),
        Slot(.guestInterruptibilityState, 784, 4, .guestBasic),
        Slot(.processorBasedControls, 788, 4, .controlProcessor),
        Slot(.exceptionBitmap, 792, 4, .controlException),
        Slot(.entryControls, 796, 4, .controlEntry),
        Slot(.entryInterruptionInfo, 800, 4, .controlEvent),
        Slot(.entryExceptionErrorCode, 804, 4, .controlEvent),
        Slot(.entryInstructionLength, 808, 4, .controlEvent),
        Slot(.tprThreshold, 812, 4, []),
        Slot(.guestRIP, 816, 8, []),
        Slot(.guestIA32BNDCFGS, 896, 8, .guestGroup1),
        Slot(.guestIA32PerfGlobalCtrl, 904, 8, .guestGroup1),
        Slot(.guestSCET, 912, 8, .guestGroup1),
        Slot(.guestSSP, 920, 8, .guestBasic),
        Slot(.guestIntrSSPTable, 928, 8, .guestGroup1),
        Slot(.guestIA32LBRCtl, 936, 8, .guestGroup1),
        Slot(.xssExitingBitmap, 960, 8, .controlGroup2),
        Slot(.enclsExitingBitmap, 968, 8, .controlGroup2),
        Slot(.hostIA32PerfGlobalCtrl, 976, 8, .hostGroup1),
        Slot(.tscMultiplier, 984, 8, .controlGroup2),
        Slot(.hostSCET, 992, 8, .hostGroup1),
        Slot(.hostSSP, 1000, 8, .hostGroup1),
        Slot(.hostIntrSSPTable, 1008, 8, .hostGroup1),
    ]

    private static let slotsByField: [UInt32: Slot] = Dictionary(uniqueKeysWithValues: layout.map { ($0.field.rawValue, $0) })

    /// The slot of a full field encoding, or nil if the layout has none.
    public static func slot(for field: VMCSField) -> Slot? { slotsByField[field.rawValue] }

    /// A guest-chosen eVMCS address L0 accepts: 4 KiB aligned, below
    /// MAXPHYADDR, the whole page in RAM, not the VMXON region. Anything else
    /// makes VMLAUNCH/VMRESUME fail with VMfailInvalid (docs/EVMCS.md).
    public static func isValidAddress(_ address: UInt64, physicalAddressBits: Int, vmxon: UInt64,
                                      memory: some GuestMemoryAccess) -> Bool {
        guard address & 0xfff == 0, address >> UInt64(physicalAddressBits) == 0, address != vmxon else { return false }
        return memory.load(UInt8.self, at: address) != nil && memory.load(UInt8.self, at: address + UInt64(pageSize - 1)) != nil
    }

    /// VM entry: the page's fields into `vmcs`. With `full` every field is
    /// read (VMLAUNCH, or a different eVMCS than the cached one: the cache
    /// holds nothing of it); otherwise only those whose group is dirty in
    /// the page's clean-field word (TLFS "Clean Fields"). Exit-information
    /// fields are not read: L1 does not write them. False: the page is not
    /// RAM (callers have checked it is).
    @discardableResult
    public static func load(from address: UInt64, into vmcs: inout VMCS12, full: Bool, memory: some GuestMemoryAccess) -> Bool {
        guard let word = memory.load(UInt32.self, at: address + cleanFieldsOffset) else { return false }
        let clean = full ? CleanFields() : CleanFields(rawValue: word & CleanFields.all.rawValue)
        // Every group clean, the usual case: the slots no bit covers, from a
        // list made once rather than a scan of the layout at every entry.
        for slot in clean == .all ? readWhenAllClean : readAtEntry where slot.isDirty(clean) {
            guard let value = read(slot, at: address, memory: memory) else { return false }
            vmcs.write(slot.field, value)
        }
        return true
    }

    /// VM exit: the fields an exit changes, from `vmcs` into the page. The
    /// clean-field word is left as L1 wrote it: L0's copy and the page agree
    /// on every field it writes, so no group becomes dirty (L1 itself sets
    /// the bits it wants after the exit).
    ///
    /// The fields go into one copy of the part of the page that holds them,
    /// which is written back whole: a store through `memory` per field cost
    /// most of a reflected exit on the enlightened VMCS (docs/PERFORMANCE.md).
    /// The page ends up as field-by-field stores would leave it.
    @discardableResult
    public static func writeBack(_ vmcs: VMCS12, to address: UInt64, memory: some GuestMemoryAccess) -> Bool {
        let span = exitSpan
        guard var bytes = memory.read(address + UInt64(span.lowerBound), count: span.count) else {
            // Not wholly RAM: each field on its own, as far as it goes.
            var ok = true
            for slot in layout where slot.isWrittenAtExit {
                ok = write(slot, vmcs.read(slot.field) ?? 0, at: address, memory: memory) && ok
            }
            return ok
        }
        bytes.withUnsafeMutableBytes { page in
            vmcs.values.withUnsafeBufferPointer { values in
                for slot in exitSlots {
                    let value = slot.vmcsSlot.map { values[$0] } ?? vmcs.read(slot.slot.field) ?? 0
                    let at = slot.slot.offset - span.lowerBound
                    switch slot.slot.width {
                    case 2: page.storeBytes(of: UInt16(truncatingIfNeeded: value).littleEndian, toByteOffset: at, as: UInt16.self)
                    case 4: page.storeBytes(of: UInt32(truncatingIfNeeded: value).littleEndian, toByteOffset: at, as: UInt32.self)
                    default: page.storeBytes(of: value.littleEndian, toByteOffset: at, as: UInt64.self)
                    }
                }
            }
        }
        return memory.write(address + UInt64(span.lowerBound), bytes: bytes)
    }

    /// The slots an entry may read (all but the exit information), and
    /// those it reads when every group is clean, in layout order.
    static let readAtEntry = layout.filter { $0.field.kind != .exitInformation }
    static let readWhenAllClean = readAtEntry.filter { $0.isDirty(.all) }

    /// The slots an exit writes, in layout order, with the VMCS12 slot that
    /// holds each full field (nil: read through `VMCS12.read`).
    static let exitSlots: [(slot: Slot, vmcsSlot: Int?)] = layout.filter(\.isWrittenAtExit).map { slot in
        (slot, slot.field.isHighAccess ? nil : VMCS12Layout.slot(of: slot.field))
    }

    /// The bytes of the page from the first to the end of the last field an exit writes.
    static let exitSpan: Range<Int> = {
        let start = exitSlots.map(\.slot.offset).min() ?? 0
        return start..<(exitSlots.map { $0.slot.offset + $0.slot.width }.max() ?? start)
    }()

    /// One field's value in the page, zero-extended.
    public static func read(_ slot: Slot, at address: UInt64, memory: some GuestMemoryAccess) -> UInt64? {
        let a = address + UInt64(slot.offset)
        switch slot.width {
        case 2: return memory.load(UInt16.self, at: a).map(UInt64.init)
        case 4: return memory.load(UInt32.self, at: a).map(UInt64.init)
        default: return memory.load(UInt64.self, at: a)
        }
    }

    /// Stores one field's value, cut to its width.
    public static func write(_ slot: Slot, _ value: UInt64, at address: UInt64, memory: some GuestMemoryAccess) -> Bool {
        let a = address + UInt64(slot.offset)
        switch slot.width {
        case 2: return memory.store(UInt16(truncatingIfNeeded: value), at: a)
        case 4: return memory.store(UInt32(truncatingIfNeeded: value), at: a)
        default: return memory.store(value, at: a)
        }
    }
}
