/// What an analysis calls a record's reason: its VMX basic exit reason when
/// the record has one (nested exits), otherwise its exit kind. Reasons sort
/// kinds first, then VMX reasons, each by code.
public struct ExitReason: Hashable, Comparable, Sendable {
    /// `1 << 32 | vmx reason` for VMX reasons, the kind's byte otherwise.
    public let key: UInt64

    @inlinable @inline(__always)
    public init(key: UInt64) { self.key = key }

    @inlinable @inline(__always)
    public init(_ r: TraceRecord) {
        key = r.vmxReason == TraceRecord.noVMXReason ? UInt64(r.kind.rawValue) : (1 << 32 | UInt64(r.vmxReason))
    }

    public static func kind(_ k: ExitKind) -> ExitReason { ExitReason(key: UInt64(k.rawValue)) }
    public static func vmx(_ code: UInt32) -> ExitReason { ExitReason(key: 1 << 32 | UInt64(code)) }

    /// True when the reason is a VMX basic exit reason.
    @inlinable public var isVMX: Bool { key >> 32 != 0 }
    /// The VMX basic exit reason or the kind's byte.
    public var code: UInt32 { UInt32(truncatingIfNeeded: key) }
    /// The exit kind, for reasons that are kinds.
    public var kind: ExitKind? { isVMX ? nil : ExitKind(rawValue: UInt8(truncatingIfNeeded: key)) }
    /// "vmx" or "kind".
    public var source: String { isVMX ? "vmx" : "kind" }

    /// VMX reasons in upper case as in Linux (`EPT_VIOLATION`, unknown ones
    /// `VMX_REASON_N`); kinds by their lower-case name (`io-out`).
    public var name: String { isVMX ? VMXExitReasons.name(code) : ExitKind(rawValue: UInt8(truncatingIfNeeded: key)).name }

    public static func < (a: ExitReason, b: ExitReason) -> Bool { a.key < b.key }
}

extension ExitReason: CustomStringConvertible {
    public var description: String { name }
}

/// Names of the VMX basic exit reasons of the Intel SDM, Vol. 3, Appendix C,
/// spelled as Linux's `VMX_EXIT_REASONS` does (but VMXON, VMXOFF). Kept here so TraceFormat needs
/// no other module.
public enum VMXExitReasons {
    public static let exceptionNMI: UInt32 = 0
    public static let externalInterrupt: UInt32 = 1
    public static let hlt: UInt32 = 12
    public static let vmcall: UInt32 = 18
    public static let vmread: UInt32 = 23
    public static let vmresume: UInt32 = 24
    public static let vmwrite: UInt32 = 25
    public static let ioInstruction: UInt32 = 30
    public static let msrRead: UInt32 = 31
    public static let msrWrite: UInt32 = 32
    public static let eptViolation: UInt32 = 48
    public static let eptMisconfig: UInt32 = 49

    static let names: [String?] = [
        "EXCEPTION_NMI", "EXTERNAL_INTERRUPT", "TRIPLE_FAULT", "INIT_SIGNAL", "SIPI_SIGNAL",   // 0-4
        "IO_SMI", "OTHER_SMI", "INTERRUPT_WINDOW", "NMI_WINDOW", "TASK_SWITCH",              // 5-9
        "CPUID", "GETSEC", "HLT", "INVD", "INVLPG",                                            // 10-14
        "RDPMC", "RDTSC", "RSM", "VMCALL", "VMCLEAR",                                          // 15-19
        "VMLAUNCH", "VMPTRLD", "VMPTRST", "VMREAD", "VMRESUME",                                // 20-24
        "VMWRITE", "VMXOFF", "VMXON", "CR_ACCESS", "DR_ACCESS",                                  // 25-29
        "IO_INSTRUCTION", "MSR_READ", "MSR_WRITE", "INVALID_STATE", "MSR_LOAD_FAIL",           // 30-34
        nil, "MWAIT_INSTRUCTION", "MONITOR_TRAP_FLAG", nil, "MONITOR_INSTRUCTION",             // 35-39
        "PAUSE_INSTRUCTION", "MCE_DURING_VMENTRY", nil, "TPR_BELOW_THRESHOLD", "APIC_ACCESS",  // 40-44
        "EOI_INDUCED", "GDTR_IDTR", "LDTR_TR", "EPT_VIOLATION", "EPT_MISCONFIG",               // 45-49
        "INVEPT", "RDTSCP", "PREEMPTION_TIMER", "INVVPID", "WBINVD",                           // 50-54
        "XSETBV", "APIC_WRITE", "RDRAND", "INVPCID", "VMFUNC",                                 // 55-59
        "ENCLS", "RDSEED", "PML_FULL", "XSAVES", "XRSTORS",                                    // 60-64
        nil, "SPP", "UMWAIT", "TPAUSE", "LOADIWKEY",                                           // 65-69
        "ENCLV", nil, "ENQCMD_PASID", "ENQCMDS_PASID", "BUS_LOCK",                             // 70-74
        "NOTIFY", "SEAMCALL", "TDCALL",                                                        // 75-77
    ]

    /// The SDM name of basic exit reason `code`, or `VMX_REASON_N` for one
    /// the table lacks.
    public static func name(_ code: UInt32) -> String {
        if code < names.count, let n = names[Int(code)] { return n }
        return "VMX_REASON_\(code)"
    }
}
