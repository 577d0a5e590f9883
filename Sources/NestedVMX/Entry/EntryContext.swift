import VMXArch

/// Facts about L1's (virtual) processor that the VM-entry checks need but
/// that are neither in the VMCS nor in the capability MSRs.
public struct EntryPlatform: Sendable {
    /// IA32_EFER.LMA of L1 when it executes VMLAUNCH/VMRESUME (SDM 27.2.4).
    public var processorInIA32eMode: Bool
    /// L1 is in SMM. Terrapin never emulates SMM for L1, so this is false.
    public var inSMM: Bool
    /// Linear-address width: what "canonical" means (SDM Vol. 1 3.3.7.1).
    public var linearAddressBits: Int
    /// The IA32_EFER bits a guest or host may set: SCE, LME, LMA, NXE.
    public var eferSupported: UInt64
    /// The IA32_DEBUGCTL bits a guest may set (SDM 27.3.1.1: "bits reserved
    /// in the IA32_DEBUGCTL MSR must be 0"). LBR and BTF, what L0 can give.
    public var debugCtlSupported: UInt64
    /// The vCPU supports RTM, which gives pending-debug-exceptions bit 16 a
    /// meaning (SDM 27.3.1.5).
    public var supportsRTM: Bool
    /// Would WRMSR of this value to this MSR #GP at CPL 0? (SDM 27.4, last
    /// rule.) nil: only the architectural rules of 27.4 are applied.
    public var wrmsrFaults: (@Sendable (UInt32, UInt64) -> Bool)?

    public init(processorInIA32eMode: Bool = true, inSMM: Bool = false, linearAddressBits: Int = 48,
                eferSupported: UInt64 = 1 << 0 | 1 << 8 | 1 << 10 | 1 << 11, debugCtlSupported: UInt64 = 0x3,
                supportsRTM: Bool = false, wrmsrFaults: (@Sendable (UInt32, UInt64) -> Bool)? = nil) {
        self.processorInIA32eMode = processorInIA32eMode
        self.inSMM = inSMM
        self.linearAddressBits = linearAddressBits
        self.eferSupported = eferSupported
        self.debugCtlSupported = debugCtlSupported
        self.supportsRTM = supportsRTM
        self.wrmsrFaults = wrmsrFaults
    }
}

/// A guest segment register as the VMCS holds it (SDM 25.4.1).
public struct VMCSSegment: Equatable, Sendable {
    public var selector: UInt16
    public var base: UInt64
    public var limit: UInt32
    /// The access-rights field (Table 25-2), all 32 bits.
    public var accessRights: UInt32

    public var type: UInt32 { accessRights & 0xf }
    /// Descriptor type: 1 = code or data.
    public var s: Bool { accessRights & 1 << 4 != 0 }
    public var dpl: UInt32 { accessRights >> 5 & 3 }
    public var present: Bool { accessRights & 1 << 7 != 0 }
    public var l: Bool { accessRights & 1 << 13 != 0 }
    public var db: Bool { accessRights & 1 << 14 != 0 }
    public var g: Bool { accessRights & 1 << 15 != 0 }
    public var unusable: Bool { accessRights & 1 << 16 != 0 }
    public var usable: Bool { !unusable }
    public var rpl: UInt32 { UInt32(selector & 3) }
    public var ti: Bool { selector & 4 != 0 }
    /// Bits 11:8 or 31:17 of the access rights are set (must be 0).
    public var reservedAccessRightsSet: Bool { accessRights & 0xf00 != 0 || accessRights & 0xfffe_0000 != 0 }
    /// The G bit agrees with the limit (SDM 27.3.1.2): limit bits 11:0 not
    /// all 1 → G = 0; any of limit bits 31:20 set → G = 1.
    public var granularityConsistent: Bool {
        if limit & 0xfff != 0xfff && g { return false }
        if limit & 0xfff0_0000 != 0 && !g { return false }
        return true
    }
}

/// Everything a VM-entry check reads: the VMCS12, the capabilities L0
/// advertises, L1's memory and the platform facts, with typed accessors.
///
/// A check reads the VMCS only through `read` (and the accessors built on
/// it) and memory only through `memory`, so that `EntryCheckMemo` can
/// record what each check depends on.
public struct EntryContext {
    let vmcs: VMCS12
    public let capabilities: VMXCapabilities
    private let guestMemory: any GuestMemoryAccess
    /// VMLAUNCH (true) or VMRESUME.
    public let launch: Bool
    public let platform: EntryPlatform
    /// Where the running check's reads are recorded, under a memo.
    let reads: EntryReads?

    public init(vmcs: VMCS12, capabilities: VMXCapabilities, memory: any GuestMemoryAccess, launch: Bool,
                platform: EntryPlatform = EntryPlatform()) {
        self.init(vmcs: vmcs, capabilities: capabilities, memory: memory, launch: launch, platform: platform, reads: nil)
    }

    init(vmcs: VMCS12, capabilities: VMXCapabilities, memory: any GuestMemoryAccess, launch: Bool,
         platform: EntryPlatform, reads: EntryReads?) {
        self.vmcs = vmcs; self.capabilities = capabilities; self.guestMemory = memory
        self.launch = launch; self.platform = platform; self.reads = reads
    }

    /// The same context, recording into `reads`.
    func recording(into reads: EntryReads) -> EntryContext {
        EntryContext(vmcs: vmcs, capabilities: capabilities, memory: guestMemory, launch: launch, platform: platform, reads: reads)
    }

    // MARK: Fields

    /// The field's value (0 if the VMCS does not hold it).
    public func read(_ field: VMCSField) -> UInt64 {
        guard let slot = VMCS12Layout.slot(of: field) else { return 0 }
        reads?.fields.insert(slot)
        let v = vmcs.values[slot]
        return field.isHighAccess ? v >> 32 : v
    }
    /// Whether the part's bits are set, depending on them alone.
    public func isSet(_ part: FieldPart) -> Bool {
        reads?.fields.insert(part.slot)
        return vmcs.values[part.fieldSlot] & part.mask != 0
    }
    public func read32(_ field: VMCSField) -> UInt32 { UInt32(truncatingIfNeeded: read(field)) }
    public func read16(_ field: VMCSField) -> UInt16 { UInt16(truncatingIfNeeded: read(field)) }

    /// L1's memory, for the checks that read it (the memo re-runs them at every entry).
    public var memory: any GuestMemoryAccess {
        reads?.memory = true
        return guestMemory
    }

    /// The guest-physical address of the VMCS region (the VMCS link pointer's rule, 27.3.1.5).
    public var vmcsAddress: UInt64 { vmcs.address }

    public var maxPhysicalAddressBits: Int { capabilities.physicalAddressBits }

    // MARK: Controls

    public var pin: PinBasedControls { PinBasedControls(rawValue: read32(.pinBasedControls)) }
    public var proc: ProcessorBasedControls { ProcessorBasedControls(rawValue: read32(.processorBasedControls)) }
    /// The secondary controls in effect: none when "activate secondary controls" is 0 (SDM 25.6.2).
    public var proc2: SecondaryProcessorBasedControls {
        proc.contains(.activateSecondaryControls) ? SecondaryProcessorBasedControls(rawValue: read32(.secondaryProcessorBasedControls)) : []
    }
    public var exitControls: VMExitControls { VMExitControls(rawValue: read32(.exitControls)) }
    public var entryControls: VMEntryControls { VMEntryControls(rawValue: read32(.entryControls)) }

    public var unrestrictedGuest: Bool { proc2.contains(.unrestrictedGuest) }
    public var ia32eModeGuest: Bool { entryControls.contains(.ia32eModeGuest) }
    public var hostAddressSpaceSize: Bool { exitControls.contains(.hostAddressSpaceSize) }

    /// IA32_VMX_BASIC[55]: controls are checked against the TRUE MSRs (A.2).
    public var usesTrueControls: Bool { capabilities.basic & 1 << 55 != 0 }

    // MARK: Event injection (25.8.3)

    public var injection: UInt32 { read32(.entryInterruptionInfo) }
    public var injecting: Bool { injection & 1 << 31 != 0 }
    /// Interruption type, bits 10:8 (meaningful when `injecting`).
    public var injectionType: UInt32 { injection >> 8 & 7 }
    public var injectionVector: UInt32 { injection & 0xff }
    public func injecting(type: UInt32) -> Bool { injecting && injectionType == type }

    // MARK: Guest state

    public var guestCR0: UInt64 { read(.guestCR0) }
    public var guestCR4: UInt64 { read(.guestCR4) }
    public var guestRFLAGS: UInt64 { read(.guestRFLAGS) }
    /// RFLAGS.VM and CR0.PE: the guest will be in virtual-8086 mode.
    public var guestV8086: Bool { isSet(.rflagsVM) }
    public var guestInterruptibility: UInt32 { read32(.guestInterruptibilityState) }
    public var guestActivity: UInt32 { read32(.guestActivityState) }

    public enum GuestSegmentName: Sendable, CaseIterable { case es, cs, ss, ds, fs, gs, ldtr, tr }

    public func guest(_ s: GuestSegmentName) -> VMCSSegment {
        let f: (VMCSField, VMCSField, VMCSField, VMCSField) = switch s {
        case .es: (.guestESSelector, .guestESBase, .guestESLimit, .guestESAccessRights)
        case .cs: (.guestCSSelector, .guestCSBase, .guestCSLimit, .guestCSAccessRights)
        case .ss: (.guestSSSelector, .guestSSBase, .guestSSLimit, .guestSSAccessRights)
        case .ds: (.guestDSSelector, .guestDSBase, .guestDSLimit, .guestDSAccessRights)
        case .fs: (.guestFSSelector, .guestFSBase, .guestFSLimit, .guestFSAccessRights)
        case .gs: (.guestGSSelector, .guestGSBase, .guestGSLimit, .guestGSAccessRights)
        case .ldtr: (.guestLDTRSelector, .guestLDTRBase, .guestLDTRLimit, .guestLDTRAccessRights)
        case .tr: (.guestTRSelector, .guestTRBase, .guestTRLimit, .guestTRAccessRights)
        }
        return VMCSSegment(selector: read16(f.0), base: read(f.1), limit: read32(f.2), accessRights: read32(f.3))
    }

    /// ES, CS, SS, DS, FS, GS.
    public var guestDataAndCode: [VMCSSegment] { [.es, .cs, .ss, .ds, .fs, .gs].map { guest($0) } }
    /// DS, ES, FS, GS: the segments with the shared rules of 27.3.1.2.
    public var guestDataSegments: [VMCSSegment] { [.ds, .es, .fs, .gs].map { guest($0) } }

    // MARK: Address helpers

    /// No bit at or above MAXPHYADDR is set.
    public func withinPhysicalWidth(_ address: UInt64) -> Bool {
        maxPhysicalAddressBits >= 64 || address >> UInt64(maxPhysicalAddressBits) == 0
    }

    /// 4 KiB aligned and within MAXPHYADDR: the rule for most control-area
    /// pointers (27.2.1.1).
    public func validPageAddress(_ address: UInt64) -> Bool {
        address & 0xfff == 0 && withinPhysicalWidth(address)
    }

    /// Bits 63:N-1 all equal, N being the linear-address width.
    public func isCanonical(_ address: UInt64) -> Bool {
        let shift = UInt64(64 - platform.linearAddressBits)
        return Int64(bitPattern: address << shift) >> Int64(shift) == Int64(bitPattern: address)
    }

    /// An MSR-load/store area: 16-byte aligned, and the first and the last
    /// byte within MAXPHYADDR (27.2.1.2, 27.2.1.3). A zero count is not checked.
    public func validMSRArea(address: UInt64, count: UInt32) -> Bool {
        if count == 0 { return true }
        guard address & 0xf == 0, withinPhysicalWidth(address) else { return false }
        // The SDM computes the last byte with more bits than MAXPHYADDR.
        let (end, overflow) = address.addingReportingOverflow(UInt64(count) * 16 - 1)
        return !overflow && withinPhysicalWidth(end)
    }

    /// Each byte of a PAT value is a valid memory type: 0, 1, 4, 5, 6 or 7
    /// (SDM Vol. 3A 11.12.2).
    public static func validPAT(_ pat: UInt64) -> Bool {
        (0..<8).allSatisfy { [0, 1, 4, 5, 6, 7].contains(pat >> (8 * UInt64($0)) & 0xff) }
    }
}
