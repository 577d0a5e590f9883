import VMXArch

/// The classes of L2's sensitive instructions, as L0 patches them
/// (docs/PATCHING.md): a site is trapped only while L1's controls make its
/// class an exit or need L0's emulation, so a site L1 ignores costs L2
/// nothing.
public struct TrapClasses: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let cpuid = TrapClasses(rawValue: 1 << 0)
    public static let rdtsc = TrapClasses(rawValue: 1 << 1)
    public static let rdtscp = TrapClasses(rawValue: 1 << 2)
    /// MOV to CR0 or CR4.
    public static let controlRegisterWrite = TrapClasses(rawValue: 1 << 3)
    /// MOV from CR0 or CR4, and SMSW.
    public static let controlRegisterRead = TrapClasses(rawValue: 1 << 4)
    public static let cr3Load = TrapClasses(rawValue: 1 << 5)
    public static let cr3Store = TrapClasses(rawValue: 1 << 6)
    /// MOV to or from CR8.
    public static let cr8 = TrapClasses(rawValue: 1 << 7)
    public static let clts = TrapClasses(rawValue: 1 << 8)
    public static let lmsw = TrapClasses(rawValue: 1 << 9)
    public static let movDR = TrapClasses(rawValue: 1 << 10)
    public static let wbinvd = TrapClasses(rawValue: 1 << 11)
    public static let invd = TrapClasses(rawValue: 1 << 12)
    public static let invlpg = TrapClasses(rawValue: 1 << 13)
    public static let invpcid = TrapClasses(rawValue: 1 << 14)
    public static let rdpmc = TrapClasses(rawValue: 1 << 15)
    public static let monitor = TrapClasses(rawValue: 1 << 16)
    public static let mwait = TrapClasses(rawValue: 1 << 17)
    public static let pause = TrapClasses(rawValue: 1 << 18)
    public static let xsetbv = TrapClasses(rawValue: 1 << 19)
    public static let rdrand = TrapClasses(rawValue: 1 << 20)
    public static let rdseed = TrapClasses(rawValue: 1 << 21)
    /// LGDT, LIDT, LLDT, LTR, SGDT, SIDT, SLDT, STR.
    public static let descriptorTable = TrapClasses(rawValue: 1 << 22)
    /// VMCALL, which exits unconditionally (26.1.2).
    public static let vmcall = TrapClasses(rawValue: 1 << 23)
}

extension ExitRouting {
    /// The classes L0 must see under `vmcs`: those that exit (SDM 26.1.2,
    /// 26.1.3), those whose result L1's controls change (26.3: TSC offset,
    /// read shadows, the CR0/CR4 masks, CR8 and its TPR in L1's APIC), and
    /// those an "enable" control turns into #UD. CR0/CR4 writes are always
    /// seen: the bits fixed in VMX operation hold for L2 too (26.3). So is
    /// VMCALL, which exits whatever L1 asks (26.1.2).
    public static func trapClasses(vmcs: VMCS12) -> TrapClasses {
        var classes: TrapClasses = [.cpuid, .invd, .xsetbv, .vmcall, .controlRegisterWrite, .cr8]
        let proc = vmcs.proc, proc2 = vmcs.proc2
        if proc.contains(.rdtscExiting) || proc.contains(.useTSCOffsetting) { classes.insert(.rdtsc) }
        if !proc2.contains(.enableRDTSCP) || proc.contains(.rdtscExiting) || proc.contains(.useTSCOffsetting) {
            classes.insert(.rdtscp)
        }
        let cr0 = maskAndShadow(0, vmcs: vmcs), cr4 = maskAndShadow(4, vmcs: vmcs)
        if cr0.mask != 0 || cr4.mask != 0 { classes.insert(.controlRegisterRead) }
        if cr0.mask & 0xf != 0 { classes.insert(.lmsw) }
        if cr0.mask & (1 << 3) != 0 { classes.insert(.clts) }
        if proc.contains(.cr3LoadExiting) { classes.insert(.cr3Load) }
        if proc.contains(.cr3StoreExiting) { classes.insert(.cr3Store) }
        if proc.contains(.movDRExiting) { classes.insert(.movDR) }
        if proc2.contains(.wbinvdExiting) { classes.insert(.wbinvd) }
        if proc.contains(.invlpgExiting) { classes.insert(.invlpg) }
        if !proc2.contains(.enableINVPCID) || proc.contains(.invlpgExiting) { classes.insert(.invpcid) }
        if proc.contains(.rdpmcExiting) { classes.insert(.rdpmc) }
        if proc.contains(.monitorExiting) { classes.insert(.monitor) }
        if proc.contains(.mwaitExiting) { classes.insert(.mwait) }
        if proc.contains(.pauseExiting) { classes.insert(.pause) }
        if proc2.contains(.rdrandExiting) { classes.insert(.rdrand) }
        if proc2.contains(.rdseedExiting) { classes.insert(.rdseed) }
        if proc2.contains(.descriptorTableExiting) { classes.insert(.descriptorTable) }
        return classes
    }

    /// What an instruction of `class` does at a trapped site, before any
    /// exit: the faults that have priority over VM exits (SDM 26.1.1:
    /// invalid-opcode exceptions and faults based on privilege level) come
    /// from the instruction itself, so L0 runs the original (`.native`);
    /// an "enable" control that is 0 makes it #UD (26.3). nil: go on to
    /// the exit conditions.
    public enum Precedence: Equatable, Sendable { case native, invalidOpcode }
    public static func precedence(_ class: TrapClasses, state: CPUState, vmcs: VMCS12) -> Precedence? {
        let proc2 = vmcs.proc2
        let cpl0 = state.cpl == 0
        let cr4 = state.cr4
        switch `class` {
        case .rdtscp where !proc2.contains(.enableRDTSCP): return .invalidOpcode
        case .invpcid where !proc2.contains(.enableINVPCID): return .invalidOpcode
        case .rdtsc, .rdtscp:
            return !cpl0 && cr4 & (1 << 2) != 0 ? .native : nil                // CR4.TSD
        case .rdpmc:
            return !cpl0 && cr4 & (1 << 8) == 0 ? .native : nil                 // CR4.PCE
        case .xsetbv:
            return !cpl0 || cr4 & (1 << 18) == 0 ? .native : nil                // CR4.OSXSAVE
        case .controlRegisterRead:
            // SMSW is allowed at CPL > 0 unless CR4.UMIP; MOV from CR is not
            // (the caller passes .controlRegisterWrite's rule for MOV).
            return !cpl0 && cr4 & (1 << 11) != 0 ? .native : nil
        case .controlRegisterWrite, .cr3Load, .cr3Store, .cr8, .clts, .lmsw, .movDR, .wbinvd, .invd, .invlpg, .invpcid,
             .monitor, .mwait:
            return cpl0 ? nil : .native
        default:
            return nil
        }
    }

    /// A descriptor-table instruction at CPL > 0: the loads always fault,
    /// the stores only under CR4.UMIP; LLDT, LTR, SLDT and STR are #UD in
    /// real and virtual-8086 mode (Vol. 2, each instruction).
    public static func descriptorTablePrecedence(_ access: DescriptorTableAccess, state: CPUState) -> Precedence? {
        if access.table.isSelector && (!state.protectedMode || state.virtual8086) { return .native }
        guard state.cpl != 0 else { return nil }
        return access.load || state.cr4 & (1 << 11) != 0 ? .native : nil
    }

    /// MOV to or from CR8 (26.1.3): a load exits under "CR8-load exiting",
    /// a store under "CR8-store exiting" ("use TPR shadow" is not offered).
    public static func wantsCR8Move(toCR8: Bool, vmcs: VMCS12) -> Bool {
        vmcs.proc.contains(toCR8 ? .cr8LoadExiting : .cr8StoreExiting)
    }

    /// The rest of the exits a single control decides (26.1.3): RDPMC,
    /// MONITOR, MWAIT, PAUSE ("PAUSE-loop exiting" is not offered), RDRAND,
    /// RDSEED, the descriptor-table instructions, and INVPCID (under
    /// "INVLPG exiting" with "enable INVPCID"). RDTSCP follows "RDTSC
    /// exiting" once "enable RDTSCP" lets it run. The unconditional ones
    /// (CPUID, INVD, XSETBV) always exit (26.1.2).
    public static func wantsExit(_ class: TrapClasses, vmcs: VMCS12) -> Bool {
        let proc = vmcs.proc, proc2 = vmcs.proc2
        switch `class` {
        case .cpuid, .invd, .xsetbv, .vmcall: return true
        case .rdtsc, .rdtscp: return proc.contains(.rdtscExiting)
        case .rdpmc: return proc.contains(.rdpmcExiting)
        case .monitor: return proc.contains(.monitorExiting)
        case .mwait: return proc.contains(.mwaitExiting)
        case .pause: return proc.contains(.pauseExiting)
        case .rdrand: return proc2.contains(.rdrandExiting)
        case .rdseed: return proc2.contains(.rdseedExiting)
        case .descriptorTable: return proc2.contains(.descriptorTableExiting)
        case .invpcid: return proc.contains(.invlpgExiting) && proc2.contains(.enableINVPCID)
        case .wbinvd: return proc2.contains(.wbinvdExiting)
        case .invlpg: return proc.contains(.invlpgExiting)
        case .movDR: return proc.contains(.movDRExiting)
        default: return false
        }
    }

    /// The exit reason for a class that `wantsExit` decides.
    public static func exitReason(_ class: TrapClasses) -> VMXExitReason? {
        switch `class` {
        case .cpuid: .cpuid
        case .invd: .invd
        case .xsetbv: .xsetbv
        case .vmcall: .vmcall
        case .rdtsc: .rdtsc
        case .rdtscp: .rdtscp
        case .rdpmc: .rdpmc
        case .monitor: .monitor
        case .mwait: .mwait
        case .pause: .pause
        case .rdrand: .rdrand
        case .rdseed: .rdseed
        case .invpcid: .invpcid
        case .wbinvd: .wbinvd
        case .invlpg: .invlpg
        case .movDR: .movDR
        default: nil
        }
    }

    /// What MOV from CR8 reads with no exit: TPR bits 7:4 of L1's local
    /// APIC (SDM Vol. 3A 11.8.6.1), since L2 runs on L1's processor.
    public static func cr8(fromTPR tpr: UInt32) -> UInt64 { UInt64(tpr >> 4) & 0xf }

    /// The TPR a MOV to CR8 with no exit writes; nil for a value with bits
    /// 63:4 set, which is #GP(0) (Vol. 3A 2.5).
    public static func tpr(fromCR8 value: UInt64) -> UInt32? { value > 0xf ? nil : UInt32(value) << 4 }
}
