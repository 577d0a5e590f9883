import VMXArch

/// How one VMX instruction ended (SDM Vol. 3C 31.2 conventions).
public enum VMXResult: Equatable, Sendable {
    /// VMsucceed: CF, PF, AF, ZF, SF, OF cleared.
    case succeed
    /// VMfailInvalid: CF set; there is no current VMCS to hold an error.
    case failInvalid
    /// VMfailValid: ZF set, the error number stored in the current VMCS.
    case failValid(UInt32)
    /// The instruction faulted: nothing changed; inject at the instruction.
    case fault(X86Exception)
    /// VMLAUNCH/VMRESUME passed every check of SDM 27.2-27.4: enter L2.
    case vmEntry(launch: Bool)
    /// A guest-state or MSR-load check failed: a VM exit with reason 33 or
    /// 34 (bit 31 set) that loads host state (SDM 27.8).
    case entryFailed(VMEntryFailure)

    public var name: String {
        switch self {
        case .succeed: "VMsucceed"
        case .failInvalid: "VMfailInvalid"
        case let .failValid(n): "VMfailValid(\(n))"
        case let .fault(e): e.description
        case let .vmEntry(launch): launch ? "VM entry (launch)" : "VM entry (resume)"
        case let .entryFailed(failure): failure.description
        }
    }
}

/// Cached translations an INVEPT or INVVPID asks L0 to drop.
public enum Invalidation: Equatable, Sendable {
    case eptSingleContext(eptp: UInt64)
    case eptAllContexts
    case vpidIndividualAddress(vpid: UInt16, address: UInt64)
    case vpidSingleContext(vpid: UInt16, retainGlobals: Bool)
    case vpidAllContexts
}

/// The record of one emulated VMX instruction, for the monitor and the trace.
public struct VMXExecution: Equatable, Sendable {
    public var instruction: VMXInstruction
    public var result: VMXResult
    /// The VMCS field a VMREAD or VMWRITE named, if any.
    public var field: VMCSField?
    public var invalidation: Invalidation?

    public init(_ instruction: VMXInstruction, _ result: VMXResult, field: VMCSField? = nil, invalidation: Invalidation? = nil) {
        self.instruction = instruction; self.result = result; self.field = field; self.invalidation = invalidation
    }
}
