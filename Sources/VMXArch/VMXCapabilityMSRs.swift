/// Indices of IA32_FEATURE_CONTROL and the VMX capability MSRs
/// (SDM Vol. 3C Appendix A; Vol. 4 Table 2-2).
public enum VMXMSR {
    public static let featureControl: UInt32 = 0x3a
    public static let basic: UInt32 = 0x480
    public static let pinbasedCtls: UInt32 = 0x481
    public static let procbasedCtls: UInt32 = 0x482
    public static let exitCtls: UInt32 = 0x483
    public static let entryCtls: UInt32 = 0x484
    public static let misc: UInt32 = 0x485
    public static let cr0Fixed0: UInt32 = 0x486
    public static let cr0Fixed1: UInt32 = 0x487
    public static let cr4Fixed0: UInt32 = 0x488
    public static let cr4Fixed1: UInt32 = 0x489
    public static let vmcsEnum: UInt32 = 0x48a
    /// Exists if IA32_VMX_PROCBASED_CTLS bit 63 (allowed-1 of bit 31) is 1.
    public static let procbasedCtls2: UInt32 = 0x48b
    public static let eptVPIDCap: UInt32 = 0x48c
    /// The "true" MSRs exist if IA32_VMX_BASIC bit 55 is 1 (A.3).
    public static let truePinbasedCtls: UInt32 = 0x48d
    public static let trueProcbasedCtls: UInt32 = 0x48e
    public static let trueExitCtls: UInt32 = 0x48f
    public static let trueEntryCtls: UInt32 = 0x490
    public static let vmfunc: UInt32 = 0x491
    /// IA32_VMX_PROCBASED_CTLS3 (A.3.4): 64 allowed-1 bits, no allowed-0 half.
    /// Exists if IA32_VMX_PROCBASED_CTLS bit 49 (allowed-1 of bit 17) is 1.
    public static let procbasedCtls3: UInt32 = 0x492
    /// IA32_VMX_EXIT_CTLS2 (A.4.2): 64 allowed-1 bits for the secondary VM-exit
    /// controls. Exists if IA32_VMX_EXIT_CTLS bit 63 (allowed-1 of bit 31) is 1.
    public static let exitCtls2: UInt32 = 0x493

    /// The classic capability MSRs, IA32_VMX_BASIC through IA32_VMX_VMFUNC.
    public static let capabilityRange: ClosedRange<UInt32> = 0x480...0x491
}

/// IA32_FEATURE_CONTROL (MSR 0x3a) bits relevant to VMX (SDM Vol. 3C 24.7
/// "Enabling and Entering VMX Operation"; Vol. 4 Table 2-2).
public struct FeatureControl: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 0: lock; once set, WRMSR to this MSR #GPs until reset.
    public static let lock = FeatureControl(rawValue: 1 << 0)
    /// Bit 1: VMXON allowed inside SMX operation.
    public static let vmxInsideSMX = FeatureControl(rawValue: 1 << 1)
    /// Bit 2: VMXON allowed outside SMX operation.
    public static let vmxOutsideSMX = FeatureControl(rawValue: 1 << 2)
    /// Bits 14:8: SENTER local function enables.
    public static let senterLocalFunctions = FeatureControl(rawValue: 0x7f << 8)
    /// Bit 15: SENTER global enable.
    public static let senterGlobalEnable = FeatureControl(rawValue: 1 << 15)
    /// Bit 17: SGX launch control enable.
    public static let sgxLaunchControl = FeatureControl(rawValue: 1 << 17)
    /// Bit 18: SGX global enable.
    public static let sgxGlobalEnable = FeatureControl(rawValue: 1 << 18)
    /// Bit 20: LMCE on.
    public static let lmceOn = FeatureControl(rawValue: 1 << 20)
}

/// IA32_VMX_BASIC (MSR 0x480), SDM Vol. 3C A.1 "Basic VMX Information".
/// Decoding keeps only the defined fields; reserved bits (31, 47:45, 63:57)
/// are dropped and encode as 0.
public struct VMXBasic: Hashable, Sendable {
    /// Bits 30:0: VMCS revision identifier (bit 31 is always 0).
    public var revisionID: UInt32
    /// Bits 44:32: bytes to allocate for the VMXON region and any VMCS region (at most 4096).
    public var regionSize: UInt16
    /// Bit 48: VMXON/VMCS/MSEG/... addresses limited to 32 bits.
    public var physicalAddressWidth32: Bool
    /// Bit 49: dual-monitor treatment of SMIs and SMM supported.
    public var dualMonitor: Bool
    /// Bits 53:50: memory type for VMCS accesses (0 = UC, 6 = WB).
    public var memoryType: UInt8
    /// Bit 54: VM exits due to INS/OUTS report instruction information.
    public var insOutsReporting: Bool
    /// Bit 55: default-1 controls may be 0; the IA32_VMX_TRUE_* MSRs exist.
    public var trueControls: Bool
    /// Bit 56: VM entry may deliver a hardware exception with or without an
    /// error code regardless of vector.
    public var deliverErrorCodeAnyException: Bool

    public static let memoryTypeUncacheable: UInt8 = 0
    public static let memoryTypeWriteBack: UInt8 = 6

    public init(revisionID: UInt32, regionSize: UInt16 = 4096, physicalAddressWidth32: Bool = false,
                dualMonitor: Bool = false, memoryType: UInt8 = VMXBasic.memoryTypeWriteBack,
                insOutsReporting: Bool = false, trueControls: Bool = false,
                deliverErrorCodeAnyException: Bool = false) {
        self.revisionID = revisionID
        self.regionSize = regionSize
        self.physicalAddressWidth32 = physicalAddressWidth32
        self.dualMonitor = dualMonitor
        self.memoryType = memoryType
        self.insOutsReporting = insOutsReporting
        self.trueControls = trueControls
        self.deliverErrorCodeAnyException = deliverErrorCodeAnyException
    }

    public init(rawValue: UInt64) {
        revisionID = UInt32(truncatingIfNeeded: rawValue) & 0x7fff_ffff
        regionSize = UInt16(truncatingIfNeeded: rawValue >> 32) & 0x1fff
        physicalAddressWidth32 = rawValue.bit(48)
        dualMonitor = rawValue.bit(49)
        memoryType = UInt8(truncatingIfNeeded: rawValue >> 50) & 0xf
        insOutsReporting = rawValue.bit(54)
        trueControls = rawValue.bit(55)
        deliverErrorCodeAnyException = rawValue.bit(56)
    }

    public var rawValue: UInt64 {
        UInt64(revisionID & 0x7fff_ffff)
            | UInt64(regionSize & 0x1fff) << 32
            | UInt64(flag: physicalAddressWidth32) << 48
            | UInt64(flag: dualMonitor) << 49
            | UInt64(memoryType & 0xf) << 50
            | UInt64(flag: insOutsReporting) << 54
            | UInt64(flag: trueControls) << 55
            | UInt64(flag: deliverErrorCodeAnyException) << 56
    }
}

/// IA32_VMX_MISC (MSR 0x485), SDM Vol. 3C A.6 "Miscellaneous Data".
/// Decoding keeps only the defined fields; reserved bits (13:9, 31) encode as 0.
public struct VMXMisc: Hashable, Sendable {
    /// Bits 4:0: the VMX-preemption timer counts down by 1 every time TSC bit X
    /// changes, X being this value.
    public var preemptionTimerTSCShift: UInt8
    /// Bit 5: VM exits store IA32_EFER.LMA into the "IA-32e mode guest" entry control.
    public var storesLMAOnExit: Bool
    /// Bit 6: activity state 1 (HLT) supported.
    public var activityHLT: Bool
    /// Bit 7: activity state 2 (shutdown) supported.
    public var activityShutdown: Bool
    /// Bit 8: activity state 3 (wait-for-SIPI) supported.
    public var activityWaitForSIPI: Bool
    /// Bit 14: Intel PT may be used in VMX operation.
    public var intelPTInVMX: Bool
    /// Bit 15: RDMSR can read IA32_SMBASE in SMM.
    public var rdmsrSMBASEInSMM: Bool
    /// Bits 24:16: number of CR3-target values supported.
    public var cr3TargetCount: UInt16
    /// Bits 27:25: N, where 512 * (N + 1) is the recommended maximum number of
    /// MSRs in each MSR-load/store list.
    public var maxMSRListSizeCode: UInt8
    /// Bit 28: IA32_SMM_MONITOR_CTL bit 2 can be set (VMXOFF unblocks SMIs).
    public var smmMonitorCtlBit2: Bool
    /// Bit 29: VMWRITE may write any supported field, including VM-exit information.
    public var vmwriteAnyField: Bool
    /// Bit 30: VM entry may inject software interrupts/exceptions/privileged
    /// software exceptions with instruction length 0.
    public var injectZeroLengthInstruction: Bool
    /// Bits 63:32: MSEG revision identifier.
    public var msegRevisionID: UInt32

    public init(preemptionTimerTSCShift: UInt8 = 0, storesLMAOnExit: Bool = false, activityHLT: Bool = false,
                activityShutdown: Bool = false, activityWaitForSIPI: Bool = false, intelPTInVMX: Bool = false,
                rdmsrSMBASEInSMM: Bool = false, cr3TargetCount: UInt16 = 0, maxMSRListSizeCode: UInt8 = 0,
                smmMonitorCtlBit2: Bool = false, vmwriteAnyField: Bool = false,
                injectZeroLengthInstruction: Bool = false, msegRevisionID: UInt32 = 0) {
        self.preemptionTimerTSCShift = preemptionTimerTSCShift
        self.storesLMAOnExit = storesLMAOnExit
        self.activityHLT = activityHLT
        self.activityShutdown = activityShutdown
        self.activityWaitForSIPI = activityWaitForSIPI
        self.intelPTInVMX = intelPTInVMX
        self.rdmsrSMBASEInSMM = rdmsrSMBASEInSMM
        self.cr3TargetCount = cr3TargetCount
        self.maxMSRListSizeCode = maxMSRListSizeCode
        self.smmMonitorCtlBit2 = smmMonitorCtlBit2
        self.vmwriteAnyField = vmwriteAnyField
        self.injectZeroLengthInstruction = injectZeroLengthInstruction
        self.msegRevisionID = msegRevisionID
    }

    public init(rawValue: UInt64) {
        preemptionTimerTSCShift = UInt8(truncatingIfNeeded: rawValue) & 0x1f
        storesLMAOnExit = rawValue.bit(5)
        activityHLT = rawValue.bit(6)
        activityShutdown = rawValue.bit(7)
        activityWaitForSIPI = rawValue.bit(8)
        intelPTInVMX = rawValue.bit(14)
        rdmsrSMBASEInSMM = rawValue.bit(15)
        cr3TargetCount = UInt16(truncatingIfNeeded: rawValue >> 16) & 0x1ff
        maxMSRListSizeCode = UInt8(truncatingIfNeeded: rawValue >> 25) & 0x7
        smmMonitorCtlBit2 = rawValue.bit(28)
        vmwriteAnyField = rawValue.bit(29)
        injectZeroLengthInstruction = rawValue.bit(30)
        msegRevisionID = UInt32(truncatingIfNeeded: rawValue >> 32)
    }

    public var rawValue: UInt64 {
        UInt64(preemptionTimerTSCShift & 0x1f)
            | UInt64(flag: storesLMAOnExit) << 5
            | UInt64(flag: activityHLT) << 6
            | UInt64(flag: activityShutdown) << 7
            | UInt64(flag: activityWaitForSIPI) << 8
            | UInt64(flag: intelPTInVMX) << 14
            | UInt64(flag: rdmsrSMBASEInSMM) << 15
            | UInt64(cr3TargetCount & 0x1ff) << 16
            | UInt64(maxMSRListSizeCode & 0x7) << 25
            | UInt64(flag: smmMonitorCtlBit2) << 28
            | UInt64(flag: vmwriteAnyField) << 29
            | UInt64(flag: injectZeroLengthInstruction) << 30
            | UInt64(msegRevisionID) << 32
    }

    /// Recommended maximum MSR-list entries: 512 * (N + 1).
    public var maxMSRListEntries: Int { 512 * (Int(maxMSRListSizeCode & 7) + 1) }
}

/// The allowed settings a 32-bit VMX control capability MSR reports
/// (SDM Vol. 3C A.3-A.5): the low dword holds the allowed-0 settings (a 1
/// means the control must be 1), the high dword the allowed-1 settings (a 0
/// means the control must be 0).
public struct AllowedSettings: RawRepresentable, Hashable, Sendable {
    /// Bits that must be 1 (low dword).
    public var allowed0: UInt32
    /// Bits that may be 1 (high dword).
    public var allowed1: UInt32

    public init(allowed0: UInt32, allowed1: UInt32) {
        self.allowed0 = allowed0
        self.allowed1 = allowed1
    }

    public init(rawValue: UInt64) {
        allowed0 = UInt32(truncatingIfNeeded: rawValue)
        allowed1 = UInt32(truncatingIfNeeded: rawValue >> 32)
    }

    public var rawValue: UInt64 { UInt64(allowed0) | UInt64(allowed1) << 32 }

    /// True iff every must-be-1 bit is set and no must-be-0 bit is set.
    public func permits(_ value: UInt32) -> Bool {
        value & allowed0 == allowed0 && value & ~allowed1 == 0
    }

    /// `value` with the must-be-1 bits forced on and the must-be-0 bits forced off.
    public func adjusted(_ value: UInt32) -> UInt32 { (value | allowed0) & allowed1 }
}

/// IA32_VMX_EPT_VPID_CAP (MSR 0x48c), SDM Vol. 3C A.10.
public struct EPTVPIDCapabilities: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let executeOnly = EPTVPIDCapabilities(rawValue: 1 << 0)
    public static let pageWalkLength4 = EPTVPIDCapabilities(rawValue: 1 << 6)
    public static let pageWalkLength5 = EPTVPIDCapabilities(rawValue: 1 << 7)
    public static let memoryTypeUC = EPTVPIDCapabilities(rawValue: 1 << 8)
    public static let memoryTypeWB = EPTVPIDCapabilities(rawValue: 1 << 14)
    public static let pde2MB = EPTVPIDCapabilities(rawValue: 1 << 16)
    public static let pdpte1GB = EPTVPIDCapabilities(rawValue: 1 << 17)
    public static let invept = EPTVPIDCapabilities(rawValue: 1 << 20)
    public static let accessedDirty = EPTVPIDCapabilities(rawValue: 1 << 21)
    public static let advancedExitInfo = EPTVPIDCapabilities(rawValue: 1 << 22)
    public static let supervisorShadowStack = EPTVPIDCapabilities(rawValue: 1 << 23)
    /// INVEPT type 1 (single-context); bit 24 + type.
    public static let inveptSingleContext = EPTVPIDCapabilities(rawValue: 1 << 25)
    /// INVEPT type 2 (all-context).
    public static let inveptAllContext = EPTVPIDCapabilities(rawValue: 1 << 26)
    public static let invvpid = EPTVPIDCapabilities(rawValue: 1 << 32)
    /// INVVPID type 0; bit 40 + type.
    public static let invvpidIndividualAddress = EPTVPIDCapabilities(rawValue: 1 << 40)
    public static let invvpidSingleContext = EPTVPIDCapabilities(rawValue: 1 << 41)
    public static let invvpidAllContext = EPTVPIDCapabilities(rawValue: 1 << 42)
    public static let invvpidSingleContextRetainGlobals = EPTVPIDCapabilities(rawValue: 1 << 43)
}

/// The extended-page-table pointer, VMCS field 0x201a (SDM Vol. 3C 25.6.11,
/// Table "Format of Extended-Page-Table Pointer"):
///
///     bits 2:0    EPT paging-structure memory type (0 UC, 6 WB)
///     bits 5:3    EPT page-walk length minus 1
///     bit  6      enable accessed and dirty flags
///     bit  7      enable supervisor shadow-stack access rights
///     bits 11:8   reserved (0)
///     bits N-1:12 physical address of the EPT PML4 (or PML5) table
///     bits 63:N   reserved (0), N = MAXPHYADDR
public struct EPTPointer: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(rootAddress: UInt64, memoryType: UInt8 = EPTPointer.memoryTypeWriteBack, pageWalkLevels: UInt8 = 4,
                accessedDirty: Bool = false, supervisorShadowStack: Bool = false) {
        rawValue = (rootAddress & Self.addressMask)
            | UInt64(memoryType & 7)
            | UInt64((pageWalkLevels &- 1) & 7) << 3
            | UInt64(flag: accessedDirty) << 6
            | UInt64(flag: supervisorShadowStack) << 7
    }

    public static let memoryTypeUncacheable: UInt8 = 0
    public static let memoryTypeWriteBack: UInt8 = 6
    static let addressMask: UInt64 = ~0xfff

    /// Bits 2:0.
    public var memoryType: UInt8 { UInt8(truncatingIfNeeded: rawValue) & 7 }
    /// Bits 5:3 plus 1: 4 for 4-level, 5 for 5-level EPT.
    public var pageWalkLevels: UInt8 { (UInt8(truncatingIfNeeded: rawValue >> 3) & 7) + 1 }
    /// Bit 6.
    public var accessedDirtyEnabled: Bool { rawValue.bit(6) }
    /// Bit 7.
    public var supervisorShadowStackEnabled: Bool { rawValue.bit(7) }
    /// Bits 63:12 as an address (includes any bits at or above MAXPHYADDR).
    public var rootAddress: UInt64 { rawValue & Self.addressMask }
    /// Same as `rootAddress` (the SDM's name for 4-level EPT).
    public var pml4Address: UInt64 { rootAddress }

    /// The bits that must be 0: 11:8 and MAXPHYADDR-1..63.
    public static func reservedBits(physicalAddressWidth: Int) -> UInt64 {
        let high: UInt64 = physicalAddressWidth >= 64 ? 0 : ~0 << UInt64(max(physicalAddressWidth, 12))
        return 0xf00 | high
    }
}

extension UInt64 {
    @inline(__always) func bit(_ n: UInt64) -> Bool { self >> n & 1 != 0 }
    @inline(__always) init(flag: Bool) { self = flag ? 1 : 0 }
}
