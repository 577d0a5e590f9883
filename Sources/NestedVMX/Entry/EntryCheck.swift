import VMXArch

/// The four stages of VM-entry checking (SDM Vol. 3C 27.1-27.4), in the order
/// VM entry performs them. Each stage fails in its own way (SDM 27.7, 27.8).
public enum EntryCheckGroup: Int, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// 27.2.1: VM-execution, VM-exit and VM-entry control fields. VMfailValid 7.
    case controls
    /// 27.2.2-27.2.4: host-state area and address-space size. VMfailValid 8.
    case hostState
    /// 27.3.1: guest-state area. VM-entry failure exit, reason 33.
    case guestState
    /// 27.4: the VM-entry MSR-load list. VM-entry failure exit, reason 34.
    case msrLoad

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .controls: "controls"
        case .hostState: "host state"
        case .guestState: "guest state"
        case .msrLoad: "MSR load"
        }
    }
}

/// What one check found.
public enum EntryCheckResult: Equatable, Sendable {
    case pass
    /// The check failed. `qualification` is the exit qualification of a
    /// guest-state failure (SDM 27.8: 0, 2 PDPTEs, 3 NMI with STI blocking,
    /// 4 VMCS link pointer) or, for the MSR-load list, the 1-based index of
    /// the failing entry. Ignored for controls and host state.
    case fail(qualification: UInt64)
}

/// One VM-entry check: a rule of SDM Vol. 3C chapter 27, named after it
/// ("27.2.1.1 pin-based controls reserved bits") so a failure in the trace
/// or in a test says exactly which rule L1 broke.
public struct EntryCheck: Sendable {
    public let name: String
    /// The SDM section ("27.2.1.1").
    public let section: String
    public let group: EntryCheckGroup
    public let run: @Sendable (EntryContext) -> EntryCheckResult

    /// A check with a general result (qualification chosen by the check).
    public init(_ section: String, _ title: String, _ group: EntryCheckGroup,
                evaluate: @escaping @Sendable (EntryContext) -> EntryCheckResult) {
        self.section = section
        self.name = section + " " + title
        self.group = group
        self.run = evaluate
    }

    /// A pass/fail check: `holds` returns true when the rule is satisfied.
    /// A failure carries `qualification` (guest state only).
    public init(_ section: String, _ title: String, _ group: EntryCheckGroup, qualification: UInt64 = 0,
                _ holds: @escaping @Sendable (EntryContext) -> Bool) {
        self.init(section, title, group) { holds($0) ? .pass : .fail(qualification: qualification) }
    }
}

/// Why a VM entry failed, as L1 must see it (SDM Vol. 3C 27.1, 27.7, 27.8).
public enum VMEntryFailure: Equatable, Sendable, CustomStringConvertible {
    /// A control-field check failed: VMfailValid with error 7.
    case controls(check: String)
    /// A host-state check failed: VMfailValid with error 8.
    case hostState(check: String)
    /// A guest-state check failed: exit reason 33 with bit 31 set, and the
    /// exit qualification of SDM 27.8 (0, 2 PDPTEs, 3 NMI injection
    /// blocked by STI, 4 VMCS link pointer). Host state is then loaded.
    case guestState(check: String, qualification: UInt64)
    /// Loading MSR-load entry `index` (1-based) failed: exit reason 34 with
    /// bit 31 set, the qualification being that index (SDM 27.4, 27.8).
    case msrLoad(index: Int)

    /// The name of the MSR-load check (27.4).
    public static let msrLoadCheckName = "27.4 VM-entry MSR-load list"

    public var group: EntryCheckGroup {
        switch self {
        case .controls: .controls
        case .hostState: .hostState
        case .guestState: .guestState
        case .msrLoad: .msrLoad
        }
    }

    /// The name of the failing check.
    public var check: String {
        switch self {
        case let .controls(c), let .hostState(c), let .guestState(c, _): c
        case .msrLoad: Self.msrLoadCheckName
        }
    }

    /// The VM-instruction error of a VMfailValid (7 or 8); nil for failures
    /// that are reported as a VM exit.
    public var vmInstructionError: UInt32? {
        switch self {
        case .controls: VMInstructionError.entryInvalidControlFields.rawValue
        case .hostState: VMInstructionError.entryInvalidHostStateFields.rawValue
        case .guestState, .msrLoad: nil
        }
    }

    /// The full exit-reason field (basic reason | bit 31) of a VM-entry
    /// failure exit; nil for VMfailValid.
    public var exitReason: UInt32? {
        switch self {
        case .controls, .hostState: nil
        case .guestState: ExitReasonField.make(basic: .entryFailureInvalidGuestState, entryFailure: true).rawValue
        case .msrLoad: ExitReasonField.make(basic: .entryFailureMSRLoading, entryFailure: true).rawValue
        }
    }

    /// The exit qualification of a VM-entry failure exit; nil for VMfailValid.
    public var exitQualification: UInt64? {
        switch self {
        case .controls, .hostState: nil
        case let .guestState(_, q): q
        case let .msrLoad(i): UInt64(i)
        }
    }

    public var description: String {
        switch self {
        case let .controls(c): "VMfailValid(7): \(c)"
        case let .hostState(c): "VMfailValid(8): \(c)"
        case let .guestState(c, q): "VM-entry failure (33, qualification \(q)): \(c)"
        case let .msrLoad(i): "VM-entry failure (34): MSR-load entry \(i)"
        }
    }
}
