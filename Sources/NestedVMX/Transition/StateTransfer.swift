import VMXArch

/// Moving architectural state between VMCS12 and vCPUs: loading L2's guest
/// state at VM entry (SDM Vol. 3C 27.3.2), saving it at VM exit (28.3) and
/// loading L1's host state at VM exit (28.5). Pure functions of values.
public enum StateTransfer {
    struct SegmentFields: Sendable {
        let selector: ResolvedField, base: ResolvedField, limit: ResolvedField, accessRights: ResolvedField
        init(_ selector: VMCSField, _ base: VMCSField, _ limit: VMCSField, _ accessRights: VMCSField) {
            self.selector = ResolvedField(selector); self.base = ResolvedField(base)
            self.limit = ResolvedField(limit); self.accessRights = ResolvedField(accessRights)
        }
    }

    /// The fields the transfers read and write, resolved to their VMCS12
    /// slots once (`ResolvedField`).
    struct Fields: Sendable {
        let guestRIP = ResolvedField(.guestRIP), guestRSP = ResolvedField(.guestRSP)
        let guestRFLAGS = ResolvedField(.guestRFLAGS)
        let guestCR0 = ResolvedField(.guestCR0), guestCR3 = ResolvedField(.guestCR3), guestCR4 = ResolvedField(.guestCR4)
        let guestEFER = ResolvedField(.guestIA32EFER), entryControls = ResolvedField(.entryControls)
        let guestGDTRBase = ResolvedField(.guestGDTRBase), guestGDTRLimit = ResolvedField(.guestGDTRLimit)
        let guestIDTRBase = ResolvedField(.guestIDTRBase), guestIDTRLimit = ResolvedField(.guestIDTRLimit)
        let guestInterruptibility = ResolvedField(.guestInterruptibilityState)
        let guestActivityState = ResolvedField(.guestActivityState)
        let entryInterruptionInfo = ResolvedField(.entryInterruptionInfo)
        let guestPendingDebugExceptions = ResolvedField(.guestPendingDebugExceptions)
        let es = SegmentFields(.guestESSelector, .guestESBase, .guestESLimit, .guestESAccessRights)
        let cs = SegmentFields(.guestCSSelector, .guestCSBase, .guestCSLimit, .guestCSAccessRights)
        let ss = SegmentFields(.guestSSSelector, .guestSSBase, .guestSSLimit, .guestSSAccessRights)
        let ds = SegmentFields(.guestDSSelector, .guestDSBase, .guestDSLimit, .guestDSAccessRights)
        let fs = SegmentFields(.guestFSSelector, .guestFSBase, .guestFSLimit, .guestFSAccessRights)
        let gs = SegmentFields(.guestGSSelector, .guestGSBase, .guestGSLimit, .guestGSAccessRights)
        let ldtr = SegmentFields(.guestLDTRSelector, .guestLDTRBase, .guestLDTRLimit, .guestLDTRAccessRights)
        let tr = SegmentFields(.guestTRSelector, .guestTRBase, .guestTRLimit, .guestTRAccessRights)
        let hostRSP = ResolvedField(.hostRSP), hostRIP = ResolvedField(.hostRIP)
        let hostCR0 = ResolvedField(.hostCR0), hostCR3 = ResolvedField(.hostCR3), hostCR4 = ResolvedField(.hostCR4)
        let hostEFER = ResolvedField(.hostIA32EFER)
        let hostCSSelector = ResolvedField(.hostCSSelector), hostSSSelector = ResolvedField(.hostSSSelector)
        let hostDSSelector = ResolvedField(.hostDSSelector), hostESSelector = ResolvedField(.hostESSelector)
        let hostFSSelector = ResolvedField(.hostFSSelector), hostGSSelector = ResolvedField(.hostGSSelector)
        let hostTRSelector = ResolvedField(.hostTRSelector)
        let hostFSBase = ResolvedField(.hostFSBase), hostGSBase = ResolvedField(.hostGSBase)
        let hostTRBase = ResolvedField(.hostTRBase)
        let hostGDTRBase = ResolvedField(.hostGDTRBase), hostIDTRBase = ResolvedField(.hostIDTRBase)
        let exitReason = ResolvedField(.exitReason), exitQualification = ResolvedField(.exitQualification)
        let guestPhysicalAddress = ResolvedField(.guestPhysicalAddress)
        let guestLinearAddress = ResolvedField(.guestLinearAddress)
        let exitInstructionLength = ResolvedField(.exitInstructionLength)
        let vmxInstructionInfo = ResolvedField(.vmxInstructionInfo)
        let exitInterruptionInfo = ResolvedField(.exitInterruptionInfo)
        let exitInterruptionErrorCode = ResolvedField(.exitInterruptionErrorCode)
        let idtVectoringInfo = ResolvedField(.idtVectoringInfo)
        let idtVectoringErrorCode = ResolvedField(.idtVectoringErrorCode)
    }
    static let fields = Fields()

    /// The guest segment registers with their fields (SDM 25.4.1), read and
    /// written through a switch: key paths cost most of the guest-state
    /// save at every VM exit (callgrind, docs/PERFORMANCE.md).
    enum GuestSegment: CaseIterable {
        case es, cs, ss, ds, fs, gs, ldtr, tr

        func fields(_ f: Fields) -> SegmentFields {
            switch self {
            case .es: f.es; case .cs: f.cs; case .ss: f.ss; case .ds: f.ds
            case .fs: f.fs; case .gs: f.gs; case .ldtr: f.ldtr; case .tr: f.tr
            }
        }

        func get(_ s: CPUState) -> SegmentState {
            switch self {
            case .es: s.es; case .cs: s.cs; case .ss: s.ss; case .ds: s.ds
            case .fs: s.fs; case .gs: s.gs; case .ldtr: s.ldtr; case .tr: s.tr
            }
        }

        func set(_ seg: SegmentState, in s: inout CPUState) {
            switch self {
            case .es: s.es = seg; case .cs: s.cs = seg; case .ss: s.ss = seg; case .ds: s.ds = seg
            case .fs: s.fs = seg; case .gs: s.gs = seg; case .ldtr: s.ldtr = seg; case .tr: s.tr = seg
            }
        }
    }

    /// L2's state at VM entry: the guest-state area, with the GPRs other
    /// than RSP carried over from L1 (VMX does not switch them, SDM 27.3.2).
    public static func guestState(from vmcs: VMCS12, l1: CPUState) -> CPUState {
        let r = fields
        var s = CPUState()
        s.gprs = l1.gprs
        s.gprs[.rsp] = vmcs[r.guestRSP]
        s.rip = vmcs[r.guestRIP]
        s.rflags = vmcs[r.guestRFLAGS] | 0x2
        s.cr0 = vmcs[r.guestCR0]
        s.cr2 = l1.cr2                        // CR2 is not switched (27.3.2): L1's, as a #PF L1 injects needs
        s.cr3 = vmcs[r.guestCR3]
        s.cr4 = vmcs[r.guestCR4] & ~(1 << 13)    // VMXE stays virtual for L2 too
        let entryControls = VMEntryControls(rawValue: UInt32(truncatingIfNeeded: vmcs[r.entryControls]))
        if entryControls.contains(.loadEFER) {
            s.efer = vmcs[r.guestEFER]
        } else {
            // SDM 27.3.2.1: without "load IA32_EFER", LMA and LME follow "IA-32e mode guest".
            let ia32e = entryControls.contains(.ia32eModeGuest)
            s.efer = ia32e ? (l1.efer | 0x500) : (l1.efer & ~0x500)
        }
        for segment in GuestSegment.allCases {
            let f = segment.fields(r)
            var seg = SegmentState()
            seg.selector = UInt16(truncatingIfNeeded: vmcs[f.selector])
            seg.base = vmcs[f.base]
            seg.limit = UInt32(truncatingIfNeeded: vmcs[f.limit])
            seg.accessRights = UInt32(truncatingIfNeeded: vmcs[f.accessRights])
            segment.set(seg, in: &s)
        }
        // CS.L means nothing outside IA-32e mode (SDM 27.3.1.2 checks it only
        // for an IA-32e-mode guest), and a vCPU refuses it there: clear it.
        // saveGuestState gives it back while CS is unchanged.
        if !s.longModeActive { s.cs.l = false }
        s.gdtr = TableRegister(base: vmcs[r.guestGDTRBase], limit: UInt16(truncatingIfNeeded: vmcs[r.guestGDTRLimit]))
        s.idtr = TableRegister(base: vmcs[r.guestIDTRBase], limit: UInt16(truncatingIfNeeded: vmcs[r.guestIDTRLimit]))
        let interruptibility = vmcs[r.guestInterruptibility]
        s.blockingBySTI = interruptibility & 1 != 0
        s.blockingByMovSS = interruptibility & 2 != 0
        return s
    }

    /// Saves L2's state into the guest-state area at VM exit (SDM 28.3).
    public static func saveGuestState(_ s: CPUState, into vmcs: inout VMCS12) {
        let r = fields
        vmcs[r.guestRIP] = s.rip
        vmcs[r.guestRSP] = s.gprs[.rsp]
        vmcs[r.guestRFLAGS] = s.rflags
        vmcs[r.guestCR0] = s.cr0
        vmcs[r.guestCR3] = s.cr3
        vmcs[r.guestCR4] = s.cr4
        if vmcs.exitControls.contains(.saveEFER) { vmcs[r.guestEFER] = s.efer }
        // 28.3.3: the "IA-32e mode guest" entry control follows IA32_EFER.LMA,
        // so an L2 that entered long mode by itself can be resumed.
        var entry = VMEntryControls(rawValue: UInt32(truncatingIfNeeded: vmcs[r.entryControls]))
        if s.efer & (1 << 10) != 0 { entry.insert(.ia32eModeGuest) } else { entry.remove(.ia32eModeGuest) }
        vmcs[r.entryControls] = UInt64(entry.rawValue)
        for segment in GuestSegment.allCases {
            let f = segment.fields(r)
            var seg = segment.get(s)
            if segment == .cs, s.efer & (1 << 10) == 0, case let ar = vmcs[f.accessRights], ar & 1 << 13 != 0 {
                // An L bit L1 wrote for a guest outside IA-32e mode, which
                // guestState cleared for the vCPU: kept while CS is the one loaded.
                var loaded = seg
                loaded.accessRights = UInt32(truncatingIfNeeded: ar)
                loaded.l = false
                if loaded == seg && vmcs[f.selector] == UInt64(seg.selector) && vmcs[f.base] == seg.base
                    && vmcs[f.limit] == UInt64(seg.limit) {
                    seg.l = true
                }
            }
            vmcs[f.selector] = UInt64(seg.selector)
            vmcs[f.base] = seg.base
            vmcs[f.limit] = UInt64(seg.limit)
            vmcs[f.accessRights] = UInt64(seg.accessRights)
        }
        vmcs[r.guestGDTRBase] = s.gdtr.base
        vmcs[r.guestGDTRLimit] = UInt64(s.gdtr.limit)
        vmcs[r.guestIDTRBase] = s.idtr.base
        vmcs[r.guestIDTRLimit] = UInt64(s.idtr.limit)
        vmcs[r.guestInterruptibility] = (s.blockingBySTI ? 1 : 0) | (s.blockingByMovSS ? 2 : 0)
    }

    /// L1's state after a VM exit: the host-state area (SDM 28.5), with
    /// L2's GPRs other than RSP (VM exits do not switch them).
    public static func hostState(from vmcs: VMCS12, l2: CPUState, l1: CPUState) -> CPUState {
        let r = fields
        var s = l1
        s.gprs = l2.gprs
        s.gprs[.rsp] = vmcs[r.hostRSP]
        s.rip = vmcs[r.hostRIP]
        s.rflags = 0x2                                  // 28.5.3: all flags cleared but bit 1
        s.cr0 = vmcs[r.hostCR0]
        s.cr2 = l2.cr2                                  // not switched (28.5.1): what L2 left
        s.cr3 = vmcs[r.hostCR3]
        s.cr4 = vmcs[r.hostCR4] & ~(1 << 13)            // VMXE is virtual: never in the real CR4
        let exitControls = vmcs.exitControls
        let longMode = exitControls.contains(.hostAddressSpaceSize)
        if exitControls.contains(.loadEFER) {
            s.efer = vmcs[r.hostEFER]
        } else {
            s.efer = longMode ? (s.efer | 0x500) : (s.efer & ~0x500)
        }
        // 28.5.2: selectors from the host fields; flat 4 GiB segments, CS 64-bit when long.
        func flat(_ selector: ResolvedField, base: UInt64, code: Bool) -> SegmentState {
            let sel = UInt16(truncatingIfNeeded: vmcs[selector])
            var seg = SegmentState(selector: sel, base: base, limit: 0xffff_ffff, type: code ? 0xb : 0x3, s: true,
                                   dpl: 0, present: true, l: code && longMode, db: !(code && longMode), g: true)
            if !code && sel == 0 { seg.unusable = true }
            return seg
        }
        s.cs = flat(r.hostCSSelector, base: 0, code: true)
        s.ss = flat(r.hostSSSelector, base: 0, code: false)
        s.ds = flat(r.hostDSSelector, base: 0, code: false)
        s.es = flat(r.hostESSelector, base: 0, code: false)
        s.fs = flat(r.hostFSSelector, base: vmcs[r.hostFSBase], code: false)
        s.gs = flat(r.hostGSSelector, base: vmcs[r.hostGSBase], code: false)
        s.tr = SegmentState(selector: UInt16(truncatingIfNeeded: vmcs[r.hostTRSelector]), base: vmcs[r.hostTRBase], limit: 0x67,
                            type: 0xb, s: false, dpl: 0, present: true)
        s.ldtr = SegmentState(selector: 0, base: 0, limit: 0, type: 0, s: false, present: false, unusable: true)
        s.gdtr = TableRegister(base: vmcs[r.hostGDTRBase], limit: 0xffff)
        s.idtr = TableRegister(base: vmcs[r.hostIDTRBase], limit: 0xffff)
        s.blockingBySTI = false
        s.blockingByMovSS = false
        return s
    }

    /// Fills the exit-information fields (SDM 28.2) and the exit reason.
    public static func recordExit(_ exit: NestedExit, into vmcs: inout VMCS12) {
        let r = fields
        vmcs[r.exitReason] = UInt64(exit.reason.rawValue)
        vmcs[r.exitQualification] = exit.qualification
        vmcs[r.guestPhysicalAddress] = exit.guestPhysical
        vmcs[r.guestLinearAddress] = exit.guestLinear
        vmcs[r.exitInstructionLength] = UInt64(exit.instructionLength)
        vmcs[r.vmxInstructionInfo] = UInt64(exit.instructionInfo)
        vmcs[r.exitInterruptionInfo] = UInt64(exit.interruptionInfo)
        vmcs[r.exitInterruptionErrorCode] = UInt64(exit.interruptionErrorCode)
        // 28.2.4: an exit during event delivery records that event.
        vmcs[r.idtVectoringInfo] = UInt64(exit.vectoring?.interruptionInformation ?? 0)
        if let code = exit.vectoring?.errorCode { vmcs[r.idtVectoringErrorCode] = UInt64(code) }
    }
}

/// A VM exit L0 reflects to L1: what goes into the exit-information fields.
public struct NestedExit: Equatable, Sendable {
    public var reason: VMXExitReason
    public var qualification: UInt64 = 0
    public var guestPhysical: UInt64 = 0
    public var guestLinear: UInt64 = 0
    public var instructionLength: Int = 0
    public var instructionInfo: UInt32 = 0
    /// VM-exit interruption information (SDM 25.9.2): for an acknowledged
    /// external interrupt, its vector with bit 31 (valid) set.
    public var interruptionInfo: UInt32 = 0
    public var interruptionErrorCode: UInt32 = 0
    /// The event L2 was receiving when the exit happened (SDM 28.2.4).
    public var vectoring: DeliveredEvent?

    public init(reason: VMXExitReason, qualification: UInt64 = 0, guestPhysical: UInt64 = 0, guestLinear: UInt64 = 0,
                instructionLength: Int = 0, instructionInfo: UInt32 = 0, interruptionInfo: UInt32 = 0,
                interruptionErrorCode: UInt32 = 0) {
        self.reason = reason; self.qualification = qualification; self.guestPhysical = guestPhysical
        self.guestLinear = guestLinear; self.instructionLength = instructionLength; self.instructionInfo = instructionInfo
        self.interruptionInfo = interruptionInfo; self.interruptionErrorCode = interruptionErrorCode
    }
}

extension NestedExit {
    /// The exit a failed EPT12 walk is (SDM 28.2.1, Table 28-7): reason 48
    /// with the walk's qualification plus `linearBits` (bits 7 and 8) and
    /// the guest-linear address, or reason 49.
    public init(_ failure: EPTWalker.Failure, guestPhysical: UInt64, guestLinear: UInt64 = 0, linearBits: UInt64 = 0) {
        switch failure {
        case let .violation(q):
            self.init(reason: .eptViolation, qualification: q | linearBits, guestPhysical: guestPhysical, guestLinear: guestLinear)
        case .misconfiguration:
            self.init(reason: .eptMisconfiguration, guestPhysical: guestPhysical)
        }
    }

    /// This exit as one that happened while delivering `event` (SDM
    /// 28.2.4): the event goes into the IDT-vectoring information, and the
    /// exit's instruction length is the length of the instruction behind a
    /// software event.
    public func duringDelivery(of event: DeliveredEvent, instructionLength: Int) -> NestedExit {
        var exit = self
        exit.vectoring = event
        exit.instructionLength = instructionLength
        return exit
    }
}

/// The event a VM entry injected (SDM 27.6), as L1 wrote it, with the
/// VM-entry instruction length and L2's RIP at the entry.
public struct EntryEvent: Equatable, Sendable {
    public var event: DeliveredEvent
    public var instructionLength: Int
    public var rip: UInt64

    /// The entry's event from VMCS12, nil when the valid bit is clear. The
    /// 32-bit fields are read as 32-bit values whatever the cache holds.
    public init?(vmcs: VMCS12, rip: UInt64) {
        guard let event = DeliveredEvent(interruptionInformation: UInt32(truncatingIfNeeded: vmcs.read(.entryInterruptionInfo) ?? 0),
                                         errorCode: UInt32(truncatingIfNeeded: vmcs.read(.entryExceptionErrorCode) ?? 0))
        else { return nil }
        self.event = event
        instructionLength = Int(UInt32(truncatingIfNeeded: vmcs.read(.entryInstructionLength) ?? 0))
        self.rip = rip
    }
}

extension StateTransfer {
    /// SDM 28.2.4: an exit while an event is being delivered records it as
    /// IDT-vectoring information. The entry's own event, still at the entry's
    /// RIP, is recorded as L1 wrote it: with its type (a vCPU may hold INT1
    /// as #DB) and, for a software event, the VM-entry instruction length as
    /// the VM-exit instruction length. An exit that already has vectoring
    /// information keeps it.
    public static func vectoring(_ exit: NestedExit, inDelivery: DeliveredEvent?, entry: EntryEvent?, rip: UInt64) -> NestedExit {
        guard exit.vectoring == nil, let event = inDelivery else { return exit }
        var exit = exit
        exit.vectoring = event
        if let entry, entry.event.vector == event.vector, entry.rip == rip {
            exit.vectoring = entry.event
            if entry.event.kind.isSoftware { exit.instructionLength = entry.instructionLength }
        }
        return exit
    }
}
