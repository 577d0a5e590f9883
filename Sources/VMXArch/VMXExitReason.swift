/// A basic VM-exit reason: bits 15:0 of the exit-reason field
/// (SDM Vol. 3C Appendix C "VMX Basic Exit Reasons", Table C-1).
///
/// Open over UInt16 so that reasons this table does not know still round-trip.
public struct VMXExitReason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    public static let exceptionOrNMI = VMXExitReason(0)
    public static let externalInterrupt = VMXExitReason(1)
    public static let tripleFault = VMXExitReason(2)
    public static let initSignal = VMXExitReason(3)
    public static let startupIPI = VMXExitReason(4)
    public static let ioSMI = VMXExitReason(5)
    public static let otherSMI = VMXExitReason(6)
    public static let interruptWindow = VMXExitReason(7)
    public static let nmiWindow = VMXExitReason(8)
    public static let taskSwitch = VMXExitReason(9)
    public static let cpuid = VMXExitReason(10)
    public static let getsec = VMXExitReason(11)
    public static let hlt = VMXExitReason(12)
    public static let invd = VMXExitReason(13)
    public static let invlpg = VMXExitReason(14)
    public static let rdpmc = VMXExitReason(15)
    public static let rdtsc = VMXExitReason(16)
    public static let rsm = VMXExitReason(17)
    public static let vmcall = VMXExitReason(18)
    public static let vmclear = VMXExitReason(19)
    public static let vmlaunch = VMXExitReason(20)
    public static let vmptrld = VMXExitReason(21)
    public static let vmptrst = VMXExitReason(22)
    public static let vmread = VMXExitReason(23)
    public static let vmresume = VMXExitReason(24)
    public static let vmwrite = VMXExitReason(25)
    public static let vmxoff = VMXExitReason(26)
    public static let vmxon = VMXExitReason(27)
    /// MOV to/from CR0, CR3, CR4, CR8, CLTS, LMSW.
    public static let controlRegisterAccess = VMXExitReason(28)
    public static let movDR = VMXExitReason(29)
    public static let ioInstruction = VMXExitReason(30)
    public static let rdmsr = VMXExitReason(31)
    public static let wrmsr = VMXExitReason(32)
    public static let entryFailureInvalidGuestState = VMXExitReason(33)
    public static let entryFailureMSRLoading = VMXExitReason(34)
    public static let mwait = VMXExitReason(36)
    public static let monitorTrapFlag = VMXExitReason(37)
    public static let monitor = VMXExitReason(39)
    public static let pause = VMXExitReason(40)
    public static let entryFailureMachineCheck = VMXExitReason(41)
    public static let tprBelowThreshold = VMXExitReason(43)
    public static let apicAccess = VMXExitReason(44)
    public static let virtualizedEOI = VMXExitReason(45)
    public static let gdtrIDTRAccess = VMXExitReason(46)
    public static let ldtrTRAccess = VMXExitReason(47)
    public static let eptViolation = VMXExitReason(48)
    public static let eptMisconfiguration = VMXExitReason(49)
    public static let invept = VMXExitReason(50)
    public static let rdtscp = VMXExitReason(51)
    public static let preemptionTimerExpired = VMXExitReason(52)
    public static let invvpid = VMXExitReason(53)
    /// WBINVD or WBNOINVD.
    public static let wbinvd = VMXExitReason(54)
    public static let xsetbv = VMXExitReason(55)
    public static let apicWrite = VMXExitReason(56)
    public static let rdrand = VMXExitReason(57)
    public static let invpcid = VMXExitReason(58)
    public static let vmfunc = VMXExitReason(59)
    public static let encls = VMXExitReason(60)
    public static let rdseed = VMXExitReason(61)
    public static let pmlFull = VMXExitReason(62)
    public static let xsaves = VMXExitReason(63)
    public static let xrstors = VMXExitReason(64)
    public static let pconfig = VMXExitReason(65)
    public static let sppRelatedEvent = VMXExitReason(66)
    public static let umwait = VMXExitReason(67)
    public static let tpause = VMXExitReason(68)
    public static let loadiwkey = VMXExitReason(69)
    public static let enclv = VMXExitReason(70)
    public static let enqcmdPASIDTranslationFailure = VMXExitReason(72)
    public static let enqcmdsPASIDTranslationFailure = VMXExitReason(73)
    public static let busLock = VMXExitReason(74)
    /// Linux calls this NOTIFY.
    public static let instructionTimeout = VMXExitReason(75)
    public static let seamcall = VMXExitReason(76)
    public static let tdcall = VMXExitReason(77)
    public static let rdmsrlist = VMXExitReason(78)
    public static let wrmsrlist = VMXExitReason(79)

    private static let table: [(VMXExitReason, String)] = [
        (exceptionOrNMI, "EXCEPTION_NMI"), (externalInterrupt, "EXTERNAL_INTERRUPT"),
        (tripleFault, "TRIPLE_FAULT"), (initSignal, "INIT_SIGNAL"), (startupIPI, "SIPI_SIGNAL"),
        (ioSMI, "IO_SMI"), (otherSMI, "OTHER_SMI"), (interruptWindow, "INTERRUPT_WINDOW"),
        (nmiWindow, "NMI_WINDOW"), (taskSwitch, "TASK_SWITCH"), (cpuid, "CPUID"), (getsec, "GETSEC"),
        (hlt, "HLT"), (invd, "INVD"), (invlpg, "INVLPG"), (rdpmc, "RDPMC"), (rdtsc, "RDTSC"),
        (rsm, "RSM"), (vmcall, "VMCALL"), (vmclear, "VMCLEAR"), (vmlaunch, "VMLAUNCH"),
        (vmptrld, "VMPTRLD"), (vmptrst, "VMPTRST"), (vmread, "VMREAD"), (vmresume, "VMRESUME"),
        (vmwrite, "VMWRITE"), (vmxoff, "VMXOFF"), (vmxon, "VMXON"), (controlRegisterAccess, "CR_ACCESS"),
        (movDR, "DR_ACCESS"), (ioInstruction, "IO_INSTRUCTION"), (rdmsr, "MSR_READ"), (wrmsr, "MSR_WRITE"),
        (entryFailureInvalidGuestState, "INVALID_STATE"), (entryFailureMSRLoading, "MSR_LOAD_FAIL"),
        (mwait, "MWAIT_INSTRUCTION"), (monitorTrapFlag, "MONITOR_TRAP_FLAG"),
        (monitor, "MONITOR_INSTRUCTION"), (pause, "PAUSE_INSTRUCTION"),
        (entryFailureMachineCheck, "MCE_DURING_VMENTRY"), (tprBelowThreshold, "TPR_BELOW_THRESHOLD"),
        (apicAccess, "APIC_ACCESS"), (virtualizedEOI, "EOI_INDUCED"), (gdtrIDTRAccess, "GDTR_IDTR"),
        (ldtrTRAccess, "LDTR_TR"), (eptViolation, "EPT_VIOLATION"), (eptMisconfiguration, "EPT_MISCONFIG"),
        (invept, "INVEPT"), (rdtscp, "RDTSCP"), (preemptionTimerExpired, "PREEMPTION_TIMER"),
        (invvpid, "INVVPID"), (wbinvd, "WBINVD"), (xsetbv, "XSETBV"), (apicWrite, "APIC_WRITE"),
        (rdrand, "RDRAND"), (invpcid, "INVPCID"), (vmfunc, "VMFUNC"), (encls, "ENCLS"),
        (rdseed, "RDSEED"), (pmlFull, "PML_FULL"), (xsaves, "XSAVES"), (xrstors, "XRSTORS"),
        (pconfig, "PCONFIG"), (sppRelatedEvent, "SPP"), (umwait, "UMWAIT"), (tpause, "TPAUSE"),
        (loadiwkey, "LOADIWKEY"), (enclv, "ENCLV"), (enqcmdPASIDTranslationFailure, "ENQCMD_PASID"),
        (enqcmdsPASIDTranslationFailure, "ENQCMDS_PASID"), (busLock, "BUS_LOCK"),
        (instructionTimeout, "NOTIFY"), (seamcall, "SEAMCALL"), (tdcall, "TDCALL"),
        (rdmsrlist, "RDMSRLIST"), (wrmsrlist, "WRMSRLIST"),
    ]

    private static let names: [UInt16: String] = {
        var names: [UInt16: String] = [:]
        for (reason, name) in table { names[reason.rawValue] = name }
        return names
    }()

    /// Every basic exit reason of Appendix C known here, ascending.
    public static let allKnown: [VMXExitReason] = table.map(\.0).sorted { $0.rawValue < $1.rawValue }

    /// True when Appendix C (as transcribed here) defines this reason.
    public var isKnown: Bool { Self.names[rawValue] != nil }

    /// The Linux-style name of a reason Appendix C defines, nil for any other number.
    public var knownName: String? { Self.names[rawValue] }

    /// Linux-style name (uapi/asm/vmx.h spelling: "EPT_VIOLATION", "VMREAD",
    /// "MSR_READ"), or "VMX_REASON_N" for unknown numbers.
    public var name: String { Self.name(code: UInt32(rawValue)) }

    /// The name of a basic exit reason kept as a 32-bit number, as trace
    /// records keep it: the Linux-style name, or "VMX_REASON_N" when the
    /// table lacks it. Bits 15:0 hold the basic reason (SDM 25.9.1), so a
    /// number above 0xffff is no reason at all and is spelled the same way.
    public static func name(code: UInt32) -> String {
        if let basic = UInt16(exactly: code), let name = names[basic] { return name }
        return "VMX_REASON_\(code)"
    }

    public var description: String { name }
}

/// The 32-bit exit-reason VMCS field (SDM Vol. 3C 25.9.1 "Basic VM-Exit
/// Information", table "Format of Exit Reason"):
///
///     bits 15:0  basic exit reason
///     bit  16    always 0
///     bits 26:17 reserved (0)
///     bit  27    VM exit incident to enclave mode
///     bit  28    pending MTF VM exit
///     bit  29    VM exit from VMX root operation (SMM VM exit)
///     bit  30    reserved (0)
///     bit  31    VM-entry failure (0 = true VM exit)
public struct ExitReasonField: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let enclaveModeBit: UInt32 = 1 << 27
    public static let pendingMTFBit: UInt32 = 1 << 28
    public static let fromVMXRootBit: UInt32 = 1 << 29
    public static let entryFailureBit: UInt32 = 1 << 31

    /// An exit-reason value with the given basic reason and VM-entry-failure flag.
    public static func make(basic: VMXExitReason, entryFailure: Bool = false) -> ExitReasonField {
        ExitReasonField(rawValue: UInt32(basic.rawValue) | (entryFailure ? entryFailureBit : 0))
    }

    /// Bits 15:0.
    public var basic: VMXExitReason {
        get { VMXExitReason(rawValue: UInt16(truncatingIfNeeded: rawValue)) }
        set { rawValue = rawValue & 0xffff_0000 | UInt32(newValue.rawValue) }
    }

    /// Bit 31.
    public var isEntryFailure: Bool {
        get { rawValue & Self.entryFailureBit != 0 }
        set { set(Self.entryFailureBit, newValue) }
    }

    /// Bit 27.
    public var isEnclaveMode: Bool {
        get { rawValue & Self.enclaveModeBit != 0 }
        set { set(Self.enclaveModeBit, newValue) }
    }

    /// Bit 28.
    public var isPendingMTF: Bool {
        get { rawValue & Self.pendingMTFBit != 0 }
        set { set(Self.pendingMTFBit, newValue) }
    }

    /// Bit 29.
    public var isFromVMXRoot: Bool {
        get { rawValue & Self.fromVMXRootBit != 0 }
        set { set(Self.fromVMXRootBit, newValue) }
    }

    private mutating func set(_ bit: UInt32, _ on: Bool) {
        if on { rawValue |= bit } else { rawValue &= ~bit }
    }

    public var description: String { isEntryFailure ? "\(basic.name) (VM-entry failure)" : basic.name }
}
