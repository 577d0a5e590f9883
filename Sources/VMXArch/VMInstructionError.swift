/// VM-instruction error numbers, stored in the VM-instruction error field
/// (0x4400) on VMfailValid (SDM Vol. 3C 31.4 "VM Instruction Error Numbers",
/// Table 31-1). Numbers 14, 21 and 27 are not defined.
public enum VMInstructionError: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case vmcallInVMXRoot = 1
    case vmclearInvalidAddress = 2
    case vmclearWithVMXONPointer = 3
    case vmlaunchNonClearVMCS = 4
    case vmresumeNonLaunchedVMCS = 5
    case vmresumeAfterVMXOFF = 6
    case entryInvalidControlFields = 7
    case entryInvalidHostStateFields = 8
    case vmptrldInvalidAddress = 9
    case vmptrldWithVMXONPointer = 10
    case vmptrldIncorrectRevisionID = 11
    case unsupportedVMCSComponent = 12
    case vmwriteToReadOnlyComponent = 13
    case vmxonInVMXRoot = 15
    case entryInvalidExecutiveVMCSPointer = 16
    case entryNonLaunchedExecutiveVMCS = 17
    case entryExecutiveVMCSPointerNotVMXONPointer = 18
    case vmcallNonClearVMCS = 19
    case vmcallInvalidExitControlFields = 20
    case vmcallIncorrectMSEGRevisionID = 22
    case vmxoffUnderDualMonitor = 23
    case vmcallInvalidSMMMonitorFeatures = 24
    case entryInvalidExecutionControlsInExecutiveVMCS = 25
    case entryEventsBlockedByMovSS = 26
    case invalidINVEPTINVVPIDOperand = 28

    /// The Table 31-1 wording.
    public var description: String {
        switch self {
        case .vmcallInVMXRoot: "VMCALL executed in VMX root operation"
        case .vmclearInvalidAddress: "VMCLEAR with invalid physical address"
        case .vmclearWithVMXONPointer: "VMCLEAR with VMXON pointer"
        case .vmlaunchNonClearVMCS: "VMLAUNCH with non-clear VMCS"
        case .vmresumeNonLaunchedVMCS: "VMRESUME with non-launched VMCS"
        case .vmresumeAfterVMXOFF: "VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME)"
        case .entryInvalidControlFields: "VM entry with invalid control field(s)"
        case .entryInvalidHostStateFields: "VM entry with invalid host-state field(s)"
        case .vmptrldInvalidAddress: "VMPTRLD with invalid physical address"
        case .vmptrldWithVMXONPointer: "VMPTRLD with VMXON pointer"
        case .vmptrldIncorrectRevisionID: "VMPTRLD with incorrect VMCS revision identifier"
        case .unsupportedVMCSComponent: "VMREAD/VMWRITE from/to unsupported VMCS component"
        case .vmwriteToReadOnlyComponent: "VMWRITE to read-only VMCS component"
        case .vmxonInVMXRoot: "VMXON executed in VMX root operation"
        case .entryInvalidExecutiveVMCSPointer: "VM entry with invalid executive-VMCS pointer"
        case .entryNonLaunchedExecutiveVMCS: "VM entry with non-launched executive VMCS"
        case .entryExecutiveVMCSPointerNotVMXONPointer:
            "VM entry with executive-VMCS pointer not VMXON pointer (when attempting to deactivate the dual-monitor treatment of SMIs and SMM)"
        case .vmcallNonClearVMCS: "VMCALL with non-clear VMCS (when attempting to activate the dual-monitor treatment of SMIs and SMM)"
        case .vmcallInvalidExitControlFields: "VMCALL with invalid VM-exit control fields"
        case .vmcallIncorrectMSEGRevisionID:
            "VMCALL with incorrect MSEG revision identifier (when attempting to activate the dual-monitor treatment of SMIs and SMM)"
        case .vmxoffUnderDualMonitor: "VMXOFF under dual-monitor treatment of SMIs and SMM"
        case .vmcallInvalidSMMMonitorFeatures:
            "VMCALL with invalid SMM-monitor features (when attempting to activate the dual-monitor treatment of SMIs and SMM)"
        case .entryInvalidExecutionControlsInExecutiveVMCS:
            "VM entry with invalid VM-execution control fields in executive VMCS (when attempting to return from SMM)"
        case .entryEventsBlockedByMovSS: "VM entry with events blocked by MOV SS"
        case .invalidINVEPTINVVPIDOperand: "Invalid operand to INVEPT/INVVPID"
        }
    }
}
