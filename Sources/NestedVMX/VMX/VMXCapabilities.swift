import VMXArch

/// The VMX capability MSRs L0 advertises to L1 (SDM Vol. 3C Appendix A).
///
/// They promise exactly what L0 can emulate faithfully on this backend: KVM
/// keeps CPUID, CR3/CR8 and DR moves, INVLPG, RDTSC, RDPMC, PAUSE, MWAIT and
/// MONITOR to itself, so the controls that would make those exit are never
/// allowed to be 1. The "true" MSRs (IA32_VMX_BASIC bit 55) let the default-1
/// CR3-load and CR3-store exiting controls be 0, and VM entry checks controls
/// against the true MSRs. The non-true MSRs still report the default-1 bits
/// as required, as Appendix A.3 demands; an L1 that only reads those cannot
/// enter, which is the honest answer.
public struct VMXCapabilities: Equatable, Sendable {
    /// VMCS revision identifier (bits 30:0 of IA32_VMX_BASIC): "TRP1".
    public static let revisionID: UInt32 = 0x5452_5031

    public var basic: UInt64
    public var pinBased: UInt64, truePinBased: UInt64
    public var procBased: UInt64, trueProcBased: UInt64
    public var procBased2: UInt64
    public var exit: UInt64, trueExit: UInt64
    public var entry: UInt64, trueEntry: UInt64
    public var misc: UInt64
    public var cr0Fixed0: UInt64, cr0Fixed1: UInt64
    public var cr4Fixed0: UInt64, cr4Fixed1: UInt64
    public var vmcsEnum: UInt64
    public var eptVPIDCap: UInt64
    public var vmfunc: UInt64
    /// MAXPHYADDR: VMXON/VMCLEAR/VMPTRLD operands may not set bits at or above it.
    public var physicalAddressBits: Int
    /// The linear-address width L1's CPUID advertises (CPUID.80000008H:EAX[15:8]):
    /// 57 with 5-level paging, else 48. What "canonical" means in the VM-entry
    /// checks (SDM 27.2.2, 27.3.1.2).
    public var linearAddressBits = 48

    /// IA32_VMX_MISC[24:16]: how many CR3-target values there are (SDM A.6).
    public var cr3TargetValues: Int { Int(VMXMisc(rawValue: misc).cr3TargetCount) }

    /// Whether VMREAD and VMWRITE reach `field` (SDM 31.3, error 12 if not):
    /// a field of Appendix B, but no CR3-target value beyond the number
    /// IA32_VMX_MISC reports (SDM 25.6.7).
    public func supports(_ field: VMCSField) -> Bool {
        guard VMCS12Layout.slot(of: field) != nil else { return false }
        let first = VMCSField.cr3TargetValue0.rawValue
        if (first...first + 6).contains(field.rawValue) { return Int(field.rawValue - first) / 2 < cr3TargetValues }
        return true
    }

    /// Packs a control capability MSR (SDM A.3-A.5): the allowed-0 half holds
    /// the bits that must be 1, the allowed-1 half those that may be 1, which
    /// always include the must-be-1 bits.
    static func controls<Control: OptionSet>(mustBe1: Control, mayBe1: Control) -> UInt64
    where Control.RawValue == UInt32 {
        AllowedSettings(allowed0: mustBe1.rawValue, allowed1: mayBe1.union(mustBe1).rawValue).rawValue
    }

    /// What Terrapin emulates. `cr4Fixed1` is every CR4 bit the vCPU accepts
    /// (from CPUID), plus VMXE, which L0 virtualises.
    public static func terrapin(physicalAddressBits: Int = 46, cr4Fixed1: UInt64 = 0x0037_27ff) -> VMXCapabilities {
        // SDM A.1: revision, 4 KiB region, write-back, INS/OUTS info (54), true controls (55).
        let basic = VMXBasic(revisionID: revisionID, regionSize: 4096, memoryType: VMXBasic.memoryTypeWriteBack,
                             insOutsReporting: true, trueControls: true).rawValue

        // Pin-based (SDM 25.6.1): external-interrupt exiting (L1's
        // interrupts exit to L1; without it L0 delivers them through L2's
        // IDT, 26.2), NMI exiting (no NMI is ever raised, so it is honoured)
        // and the VMX-preemption timer (a host timer kicks L2) may be set.
        // Default-1 bits per A.3.1.
        let pinDefault1 = PinBasedControls(rawValue: DefaultSettings.pinBased)
        let pin = controls(mustBe1: pinDefault1,
                           mayBe1: [.externalInterruptExiting, .nmiExiting, .activatePreemptionTimer] as PinBasedControls)

        // Primary processor-based (SDM 25.6.2): HLT exiting, unconditional I/O
        // exiting, I/O bitmaps, MSR bitmaps, secondary controls, and RDTSC
        // exiting and TSC offsetting, which L0 carries out at L2's RDTSCs
        // through patched code (docs/PATCHING.md): this backend ignores a new
        // IA32_TSC for the L2 VM (measured: KVM_SET_MSRS takes it, the TSC
        // reads back unchanged), so KVM cannot. Not interrupt-window exiting: KVM's interrupt window on L2's vCPU is
        // only checked at KVM's own exits, which an emulated L2 may not take while its
        // window is open (measured: no exit across STI and a 64-iteration loop), so it
        // cannot be honoured. CR3-load, CR3-store and INVLPG exiting: L0 sees
        // L2's MOV CR3 and INVLPG through patched code too, and four CR3-target
        // values go with CR3-load exiting (MISC). So do CR8-load/store, RDPMC,
        // MONITOR, MWAIT and PAUSE exiting (not "use TPR shadow" or PAUSE-loop
        // exiting). The monitor trap flag: KVM single-steps L2 (26.5.2). The true MSR (A.3.2) lets the default-1 CR3-load and
        // CR3-store exiting be 0.
        let procDefault1 = ProcessorBasedControls(rawValue: DefaultSettings.processorBased)
        let procTrueDefault1 = procDefault1.subtracting([.cr3LoadExiting, .cr3StoreExiting])
        let procMay: ProcessorBasedControls = [.hltExiting, .unconditionalIOExiting, .useIOBitmaps, .useMSRBitmaps,
                                               .activateSecondaryControls, .rdtscExiting, .useTSCOffsetting,
                                               .cr3LoadExiting, .cr3StoreExiting, .invlpgExiting, .movDRExiting,
                                               .cr8LoadExiting, .cr8StoreExiting, .rdpmcExiting, .monitorExiting,
                                               .mwaitExiting, .pauseExiting, .monitorTrapFlag]
        let trueProc = controls(mustBe1: procTrueDefault1, mayBe1: procMay)
        let proc = controls(mustBe1: procDefault1, mayBe1: procMay)

        // Secondary (SDM 25.6.2): enable EPT, enable VPID, unrestricted guest:
        // L2 runs in a KVM VM, which takes any mode, so a Multiboot L2 can start
        // in protected mode with paging off. WBINVD, RDRAND, RDSEED and
        // descriptor-table exiting, and "enable RDTSCP" and "enable INVPCID"
        // (without which they are #UD): through patched code too.
        let proc2 = controls(mustBe1: [] as SecondaryProcessorBasedControls,
                             mayBe1: [.enableEPT, .enableVPID, .unrestrictedGuest, .wbinvdExiting, .rdrandExiting,
                                      .rdseedExiting, .descriptorTableExiting, .enableRDTSCP, .enableINVPCID])

        // VM-exit controls (SDM 25.7.1): save debug controls, host address-space
        // size, acknowledge interrupt on exit, save/load PAT, save/load EFER, save
        // preemption-timer value. The true MSR (A.4.1) lets "save debug controls",
        // a default-1 bit, be 0.
        let exitDefault1 = VMExitControls(rawValue: DefaultSettings.exit)
        let exitMay: VMExitControls = [.saveDebugControls, .hostAddressSpaceSize, .acknowledgeInterruptOnExit,
                                       .savePAT, .loadPAT, .saveEFER, .loadEFER, .savePreemptionTimer]
        let exitCtl = controls(mustBe1: exitDefault1, mayBe1: exitMay)
        let trueExit = controls(mustBe1: exitDefault1.subtracting(.saveDebugControls), mayBe1: exitMay.union(exitDefault1))

        // VM-entry controls (SDM 25.8.1): load debug controls, IA-32e mode guest,
        // load PAT, load EFER. The true MSR (A.5) lets "load debug controls", a
        // default-1 bit, be 0.
        let entryDefault1 = VMEntryControls(rawValue: DefaultSettings.entry)
        let entryMay: VMEntryControls = [.loadDebugControls, .ia32eModeGuest, .loadPAT, .loadEFER]
        let entryCtl = controls(mustBe1: entryDefault1, mayBe1: entryMay)
        let trueEntry = controls(mustBe1: entryDefault1.subtracting(.loadDebugControls),
                                 mayBe1: entryMay.union(entryDefault1))

        // MISC (SDM A.6): preemption timer at TSC >> 5, store LMA on exit, HLT
        // activity state, no CR3 targets, 512-entry MSR lists, no VMWRITE to
        // exit-information fields (bit 29 clear), MSEG revision 0.
        let misc = VMXMisc(preemptionTimerTSCShift: 5, storesLMAOnExit: true, activityHLT: true, cr3TargetCount: 4).rawValue

        // CR0: PE (0), NE (5) and PG (31) must be 1 (SDM A.7). CR4: VMXE (13) is
        // virtual (L0 keeps it apart from the real CR4), so FIXED0 has it clear (docs/ARCHITECTURE.md, "Virtual CR4.VMXE").
        let cr0Fixed0: UInt64 = 1 << 31 | 1 << 5 | 1 << 0
        let cr0Fixed1: UInt64 = 0xffff_ffff
        let cr4Fixed1Value = cr4Fixed1 | 1 << 13

        // EPT/VPID (SDM A.10): 4-level walks, UC and WB, 2 MiB and 1 GiB pages,
        // INVEPT, accessed and dirty flags, INVEPT single- and all-context,
        // INVVPID all four types.
        let ept: EPTVPIDCapabilities = [
            .pageWalkLength4, .memoryTypeUC, .memoryTypeWB, .pde2MB, .pdpte1GB, .invept, .accessedDirty,
            .inveptSingleContext, .inveptAllContext, .invvpid, .invvpidIndividualAddress, .invvpidSingleContext,
            .invvpidAllContext, .invvpidSingleContextRetainGlobals,
        ]

        return VMXCapabilities(
            basic: basic, pinBased: pin, truePinBased: pin, procBased: proc, trueProcBased: trueProc,
            procBased2: proc2, exit: exitCtl, trueExit: trueExit, entry: entryCtl, trueEntry: trueEntry,
            misc: misc, cr0Fixed0: cr0Fixed0, cr0Fixed1: cr0Fixed1, cr4Fixed0: 0, cr4Fixed1: cr4Fixed1Value,
            vmcsEnum: UInt64(VMCSField.highestIndex) << 1, eptVPIDCap: ept.rawValue, vmfunc: 0,
            physicalAddressBits: physicalAddressBits)
    }

    /// The value of capability MSR `index`, or nil if it is not one.
    public func read(msr index: UInt32) -> UInt64? {
        switch index {
        case VMXMSR.basic: basic
        case VMXMSR.pinbasedCtls: pinBased
        case VMXMSR.procbasedCtls: procBased
        case VMXMSR.exitCtls: exit
        case VMXMSR.entryCtls: entry
        case VMXMSR.misc: misc
        case VMXMSR.cr0Fixed0: cr0Fixed0
        case VMXMSR.cr0Fixed1: cr0Fixed1
        case VMXMSR.cr4Fixed0: cr4Fixed0
        case VMXMSR.cr4Fixed1: cr4Fixed1
        case VMXMSR.vmcsEnum: vmcsEnum
        case VMXMSR.procbasedCtls2: procBased2
        case VMXMSR.eptVPIDCap: eptVPIDCap
        case VMXMSR.truePinbasedCtls: truePinBased
        case VMXMSR.trueProcbasedCtls: trueProcBased
        case VMXMSR.trueExitCtls: trueExit
        case VMXMSR.trueEntryCtls: trueEntry
        case VMXMSR.vmfunc: vmfunc
        default: nil
        }
    }

    /// True when `value` may be loaded into CR0 / CR4 in VMX operation (SDM A.7, A.8).
    public func permitsCR0(_ value: UInt64) -> Bool { value & cr0Fixed0 == cr0Fixed0 && value & ~cr0Fixed1 == 0 }
    public func permitsCR4(_ value: UInt64) -> Bool { value & cr4Fixed0 == cr4Fixed0 && value & ~cr4Fixed1 == 0 }

    /// An INVEPT type is supported iff EPT_VPID_CAP bit (type + 24) is set (SDM 31.3 INVEPT).
    public func supportsINVEPT(type: UInt64) -> Bool { type < 8 && eptVPIDCap & (1 << (type + 24)) != 0 }
    /// An INVVPID type is supported iff EPT_VPID_CAP bit (type + 40) is set (SDM 31.3 INVVPID).
    public func supportsINVVPID(type: UInt64) -> Bool { type < 8 && eptVPIDCap & (1 << (type + 40)) != 0 }
}
