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

    /// Packs allowed-0 (must be 1) and allowed-1 (may be 1) settings (SDM A.3).
    static func controls(mustBe1: UInt32, mayBe1: UInt32) -> UInt64 {
        UInt64(mustBe1) | UInt64(mayBe1 | mustBe1) << 32
    }

    /// What Terrapin emulates. `cr4Fixed1` is every CR4 bit the vCPU accepts
    /// (from CPUID), plus VMXE, which L0 virtualises.
    public static func terrapin(physicalAddressBits: Int = 46, cr4Fixed1: UInt64 = 0x0037_27ff) -> VMXCapabilities {
        // SDM A.1: revision, 4 KiB region, write-back (6), INS/OUTS info (54), true controls (55).
        let basic = UInt64(revisionID) | UInt64(4096) << 32 | UInt64(6) << 50 | 1 << 54 | 1 << 55

        // Pin-based (SDM 25.6.1): external-interrupt exiting (0) is required:
        // L1's interrupts arriving while L2 runs always exit to L1, which is the
        // only delivery L0 implements (none into L2's IDT). NMI exiting (3; no
        // NMI is ever raised, so it is honoured) and the VMX-preemption timer
        // (6; a host timer kicks L2) may be set. Default-1 bits 1, 2, 4.
        let pinDefault1: UInt32 = 0x16
        let pin = controls(mustBe1: pinDefault1 | 1 << 0, mayBe1: 1 << 3 | 1 << 6)

        // Primary processor-based (SDM 25.6.2): HLT exiting (7), unconditional I/O
        // exiting (24), I/O bitmaps (25), MSR bitmaps (28), secondary controls
        // (31). Not TSC offsetting: this backend ignores a new IA32_TSC for the
        // L2 VM (measured: KVM_SET_MSRS takes it, the TSC reads back unchanged),
        // so L2's TSC cannot run ahead of L1's. Not interrupt-window exiting: KVM's interrupt
        // window on L2's vCPU is only checked at KVM's own exits, which an
        // emulated L2 may not take while its window is open (measured: no exit
        // across STI and a 64-iteration loop), so it cannot be honoured.
        let procDefault1: UInt32 = 0x0401_e172
        let cr3Exiting: UInt32 = 1 << 15 | 1 << 16
        let procMay: UInt32 = 1 << 7 | 1 << 24 | 1 << 25 | 1 << 28 | 1 << 31
        let trueProc = controls(mustBe1: procDefault1 & ~cr3Exiting, mayBe1: procMay | (procDefault1 & ~cr3Exiting))
        let proc = controls(mustBe1: procDefault1, mayBe1: procMay)

        // Secondary (SDM 25.6.2): enable EPT (1), enable VPID (5), unrestricted
        // guest (7): L2 runs in a KVM VM, which takes any mode, so a Multiboot
        // L2 can start in protected mode with paging off.
        let proc2 = controls(mustBe1: 0, mayBe1: 1 << 1 | 1 << 5 | 1 << 7)

        // VM-exit controls (SDM 25.7.1): save debug controls (2), host address-space
        // size (9), acknowledge interrupt on exit (15), save/load PAT (18, 19),
        // save/load EFER (20, 21), save preemption-timer value (22). Default-1 0x36dff.
        let exitDefault1: UInt32 = 0x0003_6dff
        let exitMay: UInt32 = 1 << 2 | 1 << 9 | 1 << 15 | 1 << 18 | 1 << 19 | 1 << 20 | 1 << 21 | 1 << 22
        let exitCtl = controls(mustBe1: exitDefault1, mayBe1: exitMay)
        let trueExit = controls(mustBe1: exitDefault1 & ~(1 << 2), mayBe1: exitMay | exitDefault1)

        // VM-entry controls (SDM 25.8.1): load debug controls (2), IA-32e mode guest
        // (9), load PAT (14), load EFER (15). Default-1 0x11ff.
        let entryDefault1: UInt32 = 0x0000_11ff
        let entryMay: UInt32 = 1 << 2 | 1 << 9 | 1 << 14 | 1 << 15
        let entryCtl = controls(mustBe1: entryDefault1, mayBe1: entryMay)
        let trueEntry = controls(mustBe1: entryDefault1 & ~(1 << 2), mayBe1: entryMay | entryDefault1)

        // MISC (SDM A.6): preemption timer at TSC >> 5, store LMA on exit (5), HLT
        // activity state (6), no CR3 targets, 512-entry MSR lists, no VMWRITE to
        // exit-information fields (bit 29 clear), MSEG revision 0.
        let misc: UInt64 = 5 | 1 << 5 | 1 << 6

        // CR0: PE, NE and PG must be 1 (SDM A.7). CR4: VMXE is virtual (L0 keeps it
        // apart from the real CR4), so FIXED0 has bit 13 clear; see DESIGN.md.
        let cr0Fixed0: UInt64 = 0x8000_0021
        let cr0Fixed1: UInt64 = 0xffff_ffff
        let cr4Fixed1Value = cr4Fixed1 | 1 << 13

        // EPT/VPID (SDM A.10): 4-level walks, UC and WB, 2 MiB and 1 GiB pages,
        // INVEPT, accessed and dirty flags (21), INVEPT single- and all-context,
        // INVVPID all four types.
        let ept: UInt64 = 1 << 6 | 1 << 8 | 1 << 14 | 1 << 16 | 1 << 17 | 1 << 20 | 1 << 21 | 1 << 25 | 1 << 26
            | 1 << 32 | 1 << 40 | 1 << 41 | 1 << 42 | 1 << 43

        return VMXCapabilities(
            basic: basic, pinBased: pin, truePinBased: pin, procBased: proc, trueProcBased: trueProc,
            procBased2: proc2, exit: exitCtl, trueExit: trueExit, entry: entryCtl, trueEntry: trueEntry,
            misc: misc, cr0Fixed0: cr0Fixed0, cr0Fixed1: cr0Fixed1, cr4Fixed0: 0, cr4Fixed1: cr4Fixed1Value,
            vmcsEnum: UInt64(VMCSField.highestIndex) << 1, eptVPIDCap: ept, vmfunc: 0,
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
