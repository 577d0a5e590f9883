// VM-execution, VM-exit and VM-entry control bits (SDM Vol. 3C 25.6.1,
// 25.6.2, 25.7.1, 25.8.1) and the default-1 classes of Appendix A.

/// Pin-based VM-execution controls, field 0x4000 (SDM 25.6.1).
public struct PinBasedControls: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let externalInterruptExiting = PinBasedControls(rawValue: 1 << 0)
    public static let nmiExiting = PinBasedControls(rawValue: 1 << 3)
    public static let virtualNMIs = PinBasedControls(rawValue: 1 << 5)
    public static let activatePreemptionTimer = PinBasedControls(rawValue: 1 << 6)
    public static let processPostedInterrupts = PinBasedControls(rawValue: 1 << 7)
}

/// Primary processor-based VM-execution controls, field 0x4002 (SDM 25.6.2).
public struct ProcessorBasedControls: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let interruptWindowExiting = ProcessorBasedControls(rawValue: 1 << 2)
    public static let useTSCOffsetting = ProcessorBasedControls(rawValue: 1 << 3)
    public static let hltExiting = ProcessorBasedControls(rawValue: 1 << 7)
    public static let invlpgExiting = ProcessorBasedControls(rawValue: 1 << 9)
    public static let mwaitExiting = ProcessorBasedControls(rawValue: 1 << 10)
    public static let rdpmcExiting = ProcessorBasedControls(rawValue: 1 << 11)
    public static let rdtscExiting = ProcessorBasedControls(rawValue: 1 << 12)
    public static let cr3LoadExiting = ProcessorBasedControls(rawValue: 1 << 15)
    public static let cr3StoreExiting = ProcessorBasedControls(rawValue: 1 << 16)
    public static let activateTertiaryControls = ProcessorBasedControls(rawValue: 1 << 17)
    public static let cr8LoadExiting = ProcessorBasedControls(rawValue: 1 << 19)
    public static let cr8StoreExiting = ProcessorBasedControls(rawValue: 1 << 20)
    public static let useTPRShadow = ProcessorBasedControls(rawValue: 1 << 21)
    public static let nmiWindowExiting = ProcessorBasedControls(rawValue: 1 << 22)
    public static let movDRExiting = ProcessorBasedControls(rawValue: 1 << 23)
    public static let unconditionalIOExiting = ProcessorBasedControls(rawValue: 1 << 24)
    public static let useIOBitmaps = ProcessorBasedControls(rawValue: 1 << 25)
    public static let monitorTrapFlag = ProcessorBasedControls(rawValue: 1 << 27)
    public static let useMSRBitmaps = ProcessorBasedControls(rawValue: 1 << 28)
    public static let monitorExiting = ProcessorBasedControls(rawValue: 1 << 29)
    public static let pauseExiting = ProcessorBasedControls(rawValue: 1 << 30)
    public static let activateSecondaryControls = ProcessorBasedControls(rawValue: 1 << 31)
}

/// Secondary processor-based VM-execution controls, field 0x401e
/// (SDM 25.6.2). Bits 21 and 29 are not defined here.
public struct SecondaryProcessorBasedControls: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let virtualizeAPICAccesses = SecondaryProcessorBasedControls(rawValue: 1 << 0)
    public static let enableEPT = SecondaryProcessorBasedControls(rawValue: 1 << 1)
    public static let descriptorTableExiting = SecondaryProcessorBasedControls(rawValue: 1 << 2)
    public static let enableRDTSCP = SecondaryProcessorBasedControls(rawValue: 1 << 3)
    public static let virtualizeX2APICMode = SecondaryProcessorBasedControls(rawValue: 1 << 4)
    public static let enableVPID = SecondaryProcessorBasedControls(rawValue: 1 << 5)
    public static let wbinvdExiting = SecondaryProcessorBasedControls(rawValue: 1 << 6)
    public static let unrestrictedGuest = SecondaryProcessorBasedControls(rawValue: 1 << 7)
    public static let apicRegisterVirtualization = SecondaryProcessorBasedControls(rawValue: 1 << 8)
    public static let virtualInterruptDelivery = SecondaryProcessorBasedControls(rawValue: 1 << 9)
    public static let pauseLoopExiting = SecondaryProcessorBasedControls(rawValue: 1 << 10)
    public static let rdrandExiting = SecondaryProcessorBasedControls(rawValue: 1 << 11)
    public static let enableINVPCID = SecondaryProcessorBasedControls(rawValue: 1 << 12)
    public static let enableVMFunctions = SecondaryProcessorBasedControls(rawValue: 1 << 13)
    public static let vmcsShadowing = SecondaryProcessorBasedControls(rawValue: 1 << 14)
    public static let enableENCLSExiting = SecondaryProcessorBasedControls(rawValue: 1 << 15)
    public static let rdseedExiting = SecondaryProcessorBasedControls(rawValue: 1 << 16)
    public static let enablePML = SecondaryProcessorBasedControls(rawValue: 1 << 17)
    public static let eptViolationVE = SecondaryProcessorBasedControls(rawValue: 1 << 18)
    public static let concealVMXFromPT = SecondaryProcessorBasedControls(rawValue: 1 << 19)
    public static let enableXSAVES = SecondaryProcessorBasedControls(rawValue: 1 << 20)
    public static let modeBasedExecuteControl = SecondaryProcessorBasedControls(rawValue: 1 << 22)
    public static let subPageWritePermissions = SecondaryProcessorBasedControls(rawValue: 1 << 23)
    public static let ptUsesGuestPhysical = SecondaryProcessorBasedControls(rawValue: 1 << 24)
    public static let useTSCScaling = SecondaryProcessorBasedControls(rawValue: 1 << 25)
    public static let enableUserWaitPause = SecondaryProcessorBasedControls(rawValue: 1 << 26)
    public static let enablePCONFIG = SecondaryProcessorBasedControls(rawValue: 1 << 27)
    public static let enableENCLVExiting = SecondaryProcessorBasedControls(rawValue: 1 << 28)
    public static let vmmBusLockDetection = SecondaryProcessorBasedControls(rawValue: 1 << 30)
    public static let instructionTimeout = SecondaryProcessorBasedControls(rawValue: 1 << 31)
}

/// Tertiary processor-based VM-execution controls, 64-bit field 0x2034
/// (SDM 25.6.2), enumerated by IA32_VMX_PROCBASED_CTLS3.
public struct TertiaryProcessorBasedControls: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let loadiwkeyExiting = TertiaryProcessorBasedControls(rawValue: 1 << 0)
    public static let enableHLAT = TertiaryProcessorBasedControls(rawValue: 1 << 1)
    public static let eptPagingWriteControl = TertiaryProcessorBasedControls(rawValue: 1 << 2)
    public static let guestPagingVerification = TertiaryProcessorBasedControls(rawValue: 1 << 3)
    public static let ipiVirtualization = TertiaryProcessorBasedControls(rawValue: 1 << 4)
    public static let enableMSRLIST = TertiaryProcessorBasedControls(rawValue: 1 << 6)
    public static let virtualizeIA32SpecCtrl = TertiaryProcessorBasedControls(rawValue: 1 << 7)
}

/// Primary VM-exit controls, field 0x400c (SDM 25.7.1).
public struct VMExitControls: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let saveDebugControls = VMExitControls(rawValue: 1 << 2)
    public static let hostAddressSpaceSize = VMExitControls(rawValue: 1 << 9)
    public static let loadPerfGlobalCtrl = VMExitControls(rawValue: 1 << 12)
    public static let acknowledgeInterruptOnExit = VMExitControls(rawValue: 1 << 15)
    public static let savePAT = VMExitControls(rawValue: 1 << 18)
    public static let loadPAT = VMExitControls(rawValue: 1 << 19)
    public static let saveEFER = VMExitControls(rawValue: 1 << 20)
    public static let loadEFER = VMExitControls(rawValue: 1 << 21)
    public static let savePreemptionTimer = VMExitControls(rawValue: 1 << 22)
    public static let clearBNDCFGS = VMExitControls(rawValue: 1 << 23)
    public static let concealVMXFromPT = VMExitControls(rawValue: 1 << 24)
    public static let clearRTITCTL = VMExitControls(rawValue: 1 << 25)
    public static let clearLBRCTL = VMExitControls(rawValue: 1 << 26)
    public static let clearUINV = VMExitControls(rawValue: 1 << 27)
    public static let loadCETState = VMExitControls(rawValue: 1 << 28)
    public static let loadPKRS = VMExitControls(rawValue: 1 << 29)
    public static let savePerfGlobalCtrl = VMExitControls(rawValue: 1 << 30)
    public static let activateSecondaryControls = VMExitControls(rawValue: 1 << 31)
}

/// VM-entry controls, field 0x4012 (SDM 25.8.1).
public struct VMEntryControls: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let loadDebugControls = VMEntryControls(rawValue: 1 << 2)
    public static let ia32eModeGuest = VMEntryControls(rawValue: 1 << 9)
    public static let entryToSMM = VMEntryControls(rawValue: 1 << 10)
    public static let deactivateDualMonitor = VMEntryControls(rawValue: 1 << 11)
    public static let loadPerfGlobalCtrl = VMEntryControls(rawValue: 1 << 13)
    public static let loadPAT = VMEntryControls(rawValue: 1 << 14)
    public static let loadEFER = VMEntryControls(rawValue: 1 << 15)
    public static let loadBNDCFGS = VMEntryControls(rawValue: 1 << 16)
    public static let concealVMXFromPT = VMEntryControls(rawValue: 1 << 17)
    public static let loadRTITCTL = VMEntryControls(rawValue: 1 << 18)
    public static let loadUINV = VMEntryControls(rawValue: 1 << 19)
    public static let loadCETState = VMEntryControls(rawValue: 1 << 20)
    public static let loadLBRCTL = VMEntryControls(rawValue: 1 << 21)
    public static let loadPKRS = VMEntryControls(rawValue: 1 << 22)
}

/// The default-1 control bits: bits that are 1 in the non-"true" capability
/// MSRs' allowed-0 half on every processor, and that may be 0 only when
/// IA32_VMX_BASIC bit 55 is set and the "true" MSR says so (SDM A.2, A.3.1,
/// A.3.2, A.4.1, A.5).
public enum DefaultSettings {
    /// Pin-based: bits 1, 2, 4.
    public static let pinBased: UInt32 = 0x0000_0016
    /// Primary processor-based: bits 1, 4-6, 8, 13-16, 26.
    public static let processorBased: UInt32 = 0x0401_e172
    /// VM-exit: bits 0-8, 10, 11, 13, 14, 16, 17.
    public static let exit: UInt32 = 0x0003_6dff
    /// VM-entry: bits 0-8, 12.
    public static let entry: UInt32 = 0x0000_11ff
}
