import VMXArch

// SDM Vol. 3C 27.3.1 "Checks on the Guest State Area". A failure is a
// VM-entry failure exit: basic reason 33 with bit 31 set, and the exit
// qualification of 27.8 (0 unless stated: 2 PDPTEs, 3 NMI injection while
// blocked by STI, 4 VMCS link pointer).

/// Exit qualifications of a guest-state VM-entry failure (SDM 27.8).
public enum EntryFailureQualification {
    public static let none: UInt64 = 0
    public static let pdpte: UInt64 = 2
    public static let nmiBlockedBySTI: UInt64 = 3
    public static let vmcsLinkPointer: UInt64 = 4
}

enum GuestStateChecks {
    static let all: [EntryCheck] = controlRegisters + segmentRegisters + descriptorTables + ripAndRFLAGS
        + nonRegisterState + pdptes

    static let cr0PE: UInt64 = 1 << 0, cr0WP: UInt64 = 1 << 16, cr0PG: UInt64 = 1 << 31
    static let cr4PAE: UInt64 = 1 << 5, cr4PCIDE: UInt64 = 1 << 17, cr4CET: UInt64 = 1 << 23
    static let blockingBySTI: UInt32 = 1 << 0, blockingByMovSS: UInt32 = 1 << 1
    static let blockingBySMI: UInt32 = 1 << 2, blockingByNMI: UInt32 = 1 << 3

    enum Activity {
        static let active: UInt32 = 0, hlt: UInt32 = 1, shutdown: UInt32 = 2, waitForSIPI: UInt32 = 3
    }

    // MARK: 27.3.1.1 Control registers, debug registers and MSRs

    static let controlRegisters: [EntryCheck] = [
        // PE and PG are exempt when "unrestricted guest" is 1.
        EntryCheck("27.3.1.1", "guest CR0 fixed bits", .guestState) { c in
            let cr0 = c.guestCR0
            let fixed0 = c.capabilities.cr0Fixed0 & (c.unrestrictedGuest ? ~(cr0PE | cr0PG) : ~0)
            return cr0 & fixed0 == fixed0 && cr0 & ~c.capabilities.cr0Fixed1 == 0
        },
        EntryCheck("27.3.1.1", "guest CR0.PG requires CR0.PE", .guestState) {
            $0.guestCR0 & cr0PG == 0 || $0.guestCR0 & cr0PE != 0
        },
        EntryCheck("27.3.1.1", "guest CR4 fixed bits", .guestState) { $0.capabilities.permitsCR4($0.guestCR4) },
        EntryCheck("27.3.1.1", "guest CR4.CET requires CR0.WP", .guestState) {
            $0.guestCR4 & cr4CET == 0 || $0.guestCR0 & cr0WP != 0
        },
        EntryCheck("27.3.1.1", "guest IA32_DEBUGCTL reserved bits", .guestState) {
            !$0.entryControls.contains(.loadDebugControls)
                || $0.read(.guestIA32Debugctl) & ~$0.platform.debugCtlSupported == 0
        },
        EntryCheck("27.3.1.1", "IA-32e mode guest requires CR0.PG and CR4.PAE", .guestState) {
            !$0.ia32eModeGuest || ($0.guestCR0 & cr0PG != 0 && $0.guestCR4 & cr4PAE != 0)
        },
        EntryCheck("27.3.1.1", "guest CR4.PCIDE requires IA-32e mode guest", .guestState) {
            $0.ia32eModeGuest || $0.guestCR4 & cr4PCIDE == 0
        },
        EntryCheck("27.3.1.1", "guest CR3 physical-address width", .guestState) { $0.withinPhysicalWidth($0.read(.guestCR3)) },
        EntryCheck("27.3.1.1", "guest DR7 bits 63:32", .guestState) {
            !$0.entryControls.contains(.loadDebugControls) || $0.read(.guestDR7) >> 32 == 0
        },
        EntryCheck("27.3.1.1", "guest IA32_SYSENTER_ESP canonical", .guestState) { $0.isCanonical($0.read(.guestIA32SysenterESP)) },
        EntryCheck("27.3.1.1", "guest IA32_SYSENTER_EIP canonical", .guestState) { $0.isCanonical($0.read(.guestIA32SysenterEIP)) },
        EntryCheck("27.3.1.1", "guest IA32_PAT memory types", .guestState) {
            !$0.entryControls.contains(.loadPAT) || EntryContext.validPAT($0.read(.guestIA32PAT))
        },
        EntryCheck("27.3.1.1", "guest IA32_EFER reserved bits", .guestState) {
            !$0.entryControls.contains(.loadEFER) || $0.read(.guestIA32EFER) & ~$0.platform.eferSupported == 0
        },
        EntryCheck("27.3.1.1", "guest IA32_EFER.LMA matches IA-32e mode guest", .guestState) {
            !$0.entryControls.contains(.loadEFER) || ($0.read(.guestIA32EFER) & HostStateChecks.efer.lma != 0) == $0.ia32eModeGuest
        },
        EntryCheck("27.3.1.1", "guest IA32_EFER.LME matches IA-32e mode guest when CR0.PG", .guestState) { c in
            !c.entryControls.contains(.loadEFER) || c.guestCR0 & cr0PG == 0
                || (c.read(.guestIA32EFER) & HostStateChecks.efer.lme != 0) == c.ia32eModeGuest
        },
    ]

    // MARK: 27.3.1.2 Segment registers

    /// True for the rules of 27.3.1.2 that apply only outside virtual-8086 mode.
    static func protectedRules(_ c: EntryContext) -> Bool { !c.guestV8086 }

    static let segmentRegisters: [EntryCheck] = [
        // Selectors.
        EntryCheck("27.3.1.2", "guest TR selector TI", .guestState) { !$0.guest(.tr).ti },
        EntryCheck("27.3.1.2", "guest LDTR selector TI", .guestState) { $0.guest(.ldtr).unusable || !$0.guest(.ldtr).ti },
        EntryCheck("27.3.1.2", "guest SS RPL equals CS RPL", .guestState) { c in
            c.guestV8086 || c.unrestrictedGuest || c.guest(.ss).rpl == c.guest(.cs).rpl
        },
        // Bases.
        EntryCheck("27.3.1.2", "virtual-8086 segment bases", .guestState) { c in
            !c.guestV8086 || c.guestDataAndCode.allSatisfy { $0.base == UInt64($0.selector) << 4 }
        },
        EntryCheck("27.3.1.2", "guest TR, FS and GS bases canonical", .guestState) { c in
            [.tr, .fs, .gs].allSatisfy { c.isCanonical(c.guest($0).base) }
        },
        EntryCheck("27.3.1.2", "guest LDTR base canonical", .guestState) { c in
            c.guest(.ldtr).unusable || c.isCanonical(c.guest(.ldtr).base)
        },
        EntryCheck("27.3.1.2", "guest CS base bits 63:32", .guestState) { $0.guest(.cs).base >> 32 == 0 },
        EntryCheck("27.3.1.2", "guest SS, DS and ES base bits 63:32", .guestState) { c in
            [.ss, .ds, .es].allSatisfy { c.guest($0).unusable || c.guest($0).base >> 32 == 0 }
        },
        // Limits and access rights in virtual-8086 mode.
        EntryCheck("27.3.1.2", "virtual-8086 segment limits", .guestState) { c in
            !c.guestV8086 || c.guestDataAndCode.allSatisfy { $0.limit == 0xffff }
        },
        EntryCheck("27.3.1.2", "virtual-8086 segment access rights", .guestState) { c in
            !c.guestV8086 || c.guestDataAndCode.allSatisfy { $0.accessRights == 0xf3 }
        },
        // Access rights outside virtual-8086 mode. Type: CS is accessed code
        // (9, 11, 13, 15), or 3 with "unrestricted guest"; SS is read/write
        // accessed data (3, 7); DS, ES, FS, GS are accessed, and readable if code.
        EntryCheck("27.3.1.2", "guest CS type", .guestState) { c in
            let t = c.guest(.cs).type
            return c.guestV8086 || [9, 11, 13, 15].contains(t) || (t == 3 && c.unrestrictedGuest)
        },
        EntryCheck("27.3.1.2", "guest SS type", .guestState) { c in
            let ss = c.guest(.ss)
            return c.guestV8086 || ss.unusable || ss.type == 3 || ss.type == 7
        },
        EntryCheck("27.3.1.2", "guest DS, ES, FS and GS type", .guestState) { c in
            c.guestV8086 || c.guestDataSegments.allSatisfy {
                $0.unusable || ($0.type & 1 != 0 && ($0.type & 8 == 0 || $0.type & 2 != 0))
            }
        },
        EntryCheck("27.3.1.2", "guest CS, SS, DS, ES, FS and GS S bit", .guestState) { c in
            c.guestV8086 || (c.guest(.cs).s && c.guestDataAndCode.allSatisfy { $0.unusable || $0.s })
        },
        // CS DPL: 0 for type 3; = SS.DPL for non-conforming code (9, 11);
        // <= SS.DPL for conforming code (13, 15).
        EntryCheck("27.3.1.2", "guest CS DPL", .guestState) { c in
            guard !c.guestV8086 else { return true }
            let cs = c.guest(.cs), ss = c.guest(.ss)
            switch cs.type {
            case 3: return cs.dpl == 0
            case 9, 11: return cs.dpl == ss.dpl
            case 13, 15: return cs.dpl <= ss.dpl
            default: return true  // the type check reports it
            }
        },
        // SS DPL: = SS.RPL unless "unrestricted guest"; 0 if CS type is 3 or CR0.PE is 0.
        EntryCheck("27.3.1.2", "guest SS DPL", .guestState) { c in
            guard !c.guestV8086 else { return true }
            let ss = c.guest(.ss)
            if !c.unrestrictedGuest && ss.dpl != ss.rpl { return false }
            if (c.guest(.cs).type == 3 || c.guestCR0 & cr0PE == 0) && ss.dpl != 0 { return false }
            return true
        },
        // DS, ES, FS, GS DPL >= RPL for data and non-conforming code (types
        // 0-11), when usable and without "unrestricted guest".
        EntryCheck("27.3.1.2", "guest DS, ES, FS and GS DPL", .guestState) { c in
            c.guestV8086 || c.unrestrictedGuest
                || c.guestDataSegments.allSatisfy { $0.unusable || $0.type > 11 || $0.dpl >= $0.rpl }
        },
        EntryCheck("27.3.1.2", "guest CS, SS, DS, ES, FS and GS present", .guestState) { c in
            c.guestV8086 || (c.guest(.cs).present && c.guestDataAndCode.allSatisfy { $0.unusable || $0.present })
        },
        EntryCheck("27.3.1.2", "guest CS, SS, DS, ES, FS and GS access-rights reserved bits", .guestState) { c in
            c.guestV8086
                || (!c.guest(.cs).reservedAccessRightsSet
                    && c.guestDataAndCode.allSatisfy { $0.unusable || !$0.reservedAccessRightsSet })
        },
        EntryCheck("27.3.1.2", "guest CS D/B with L in IA-32e mode", .guestState) { c in
            let cs = c.guest(.cs)
            return c.guestV8086 || !c.ia32eModeGuest || !cs.l || !cs.db
        },
        EntryCheck("27.3.1.2", "guest CS, SS, DS, ES, FS and GS limit and granularity", .guestState) { c in
            c.guestV8086
                || (c.guest(.cs).granularityConsistent
                    && c.guestDataAndCode.allSatisfy { $0.unusable || $0.granularityConsistent })
        },
        // TR: busy 32/64-bit TSS (11), or busy 16-bit TSS (3) outside IA-32e
        // mode; system descriptor, present, usable, reserved bits clear, G
        // consistent with the limit.
        EntryCheck("27.3.1.2", "guest TR type", .guestState) { c in
            let t = c.guest(.tr).type
            return t == 11 || (t == 3 && !c.ia32eModeGuest)
        },
        EntryCheck("27.3.1.2", "guest TR S bit", .guestState) { !$0.guest(.tr).s },
        EntryCheck("27.3.1.2", "guest TR present", .guestState) { $0.guest(.tr).present },
        EntryCheck("27.3.1.2", "guest TR access-rights reserved bits", .guestState) { !$0.guest(.tr).reservedAccessRightsSet },
        EntryCheck("27.3.1.2", "guest TR limit and granularity", .guestState) { $0.guest(.tr).granularityConsistent },
        EntryCheck("27.3.1.2", "guest TR usable", .guestState) { $0.guest(.tr).usable },
        // LDTR, if usable: LDT (2), system descriptor, present, reserved bits
        // clear, G consistent with the limit.
        EntryCheck("27.3.1.2", "guest LDTR type", .guestState) { $0.guest(.ldtr).unusable || $0.guest(.ldtr).type == 2 },
        EntryCheck("27.3.1.2", "guest LDTR S bit", .guestState) { $0.guest(.ldtr).unusable || !$0.guest(.ldtr).s },
        EntryCheck("27.3.1.2", "guest LDTR present", .guestState) { $0.guest(.ldtr).unusable || $0.guest(.ldtr).present },
        EntryCheck("27.3.1.2", "guest LDTR access-rights reserved bits", .guestState) {
            $0.guest(.ldtr).unusable || !$0.guest(.ldtr).reservedAccessRightsSet
        },
        EntryCheck("27.3.1.2", "guest LDTR limit and granularity", .guestState) {
            $0.guest(.ldtr).unusable || $0.guest(.ldtr).granularityConsistent
        },
    ]

    // MARK: 27.3.1.3 Descriptor-table registers

    static let descriptorTables: [EntryCheck] = [
        EntryCheck("27.3.1.3", "guest GDTR and IDTR bases canonical", .guestState) {
            $0.isCanonical($0.read(.guestGDTRBase)) && $0.isCanonical($0.read(.guestIDTRBase))
        },
        EntryCheck("27.3.1.3", "guest GDTR and IDTR limit bits 31:16", .guestState) {
            $0.read32(.guestGDTRLimit) >> 16 == 0 && $0.read32(.guestIDTRLimit) >> 16 == 0
        },
    ]

    // MARK: 27.3.1.4 RIP and RFLAGS

    static let ripAndRFLAGS: [EntryCheck] = [
        // Bits 63:32 zero unless the guest will be in 64-bit mode, where RIP
        // must be canonical instead.
        EntryCheck("27.3.1.4", "guest RIP", .guestState) { c in
            let rip = c.read(.guestRIP)
            return c.ia32eModeGuest && c.guest(.cs).l ? c.isCanonical(rip) : rip >> 32 == 0
        },
        // Bits 63:22, 15, 5 and 3 zero; bit 1 set.
        EntryCheck("27.3.1.4", "guest RFLAGS reserved bits", .guestState) { c in
            let rflags = c.guestRFLAGS
            return rflags & (~0 << 22 | 1 << 15 | 1 << 5 | 1 << 3) == 0 && rflags & 2 != 0
        },
        EntryCheck("27.3.1.4", "guest RFLAGS.VM outside IA-32e and real mode", .guestState) {
            !$0.guestV8086 || (!$0.ia32eModeGuest && $0.guestCR0 & cr0PE != 0)
        },
        EntryCheck("27.3.1.4", "guest RFLAGS.IF for external-interrupt injection", .guestState) {
            !$0.injecting(type: InterruptionType.externalInterrupt) || $0.isSet(.rflagsIF)
        },
    ]

    // MARK: 27.3.1.5 Non-register state

    /// May an event of this type and vector be injected in this activity state?
    static func injectable(type: UInt32, vector: UInt32, activity: UInt32) -> Bool {
        switch activity {
        case Activity.active: return true
        // External interrupts, NMIs, #DB, #MC, and pending MTF VM exits.
        case Activity.hlt:
            switch type {
            case InterruptionType.externalInterrupt, InterruptionType.nmi: return true
            case InterruptionType.hardwareException: return vector == 1 || vector == 18
            case InterruptionType.otherEvent: return vector == 0
            default: return false
            }
        // NMIs and machine checks.
        case Activity.shutdown:
            return type == InterruptionType.nmi || (type == InterruptionType.hardwareException && vector == 18)
        default: return false
        }
    }

    static let pendingDebugBS: UInt64 = 1 << 14, pendingDebugEnabledBreakpoint: UInt64 = 1 << 12
    static let pendingDebugRTM: UInt64 = 1 << 16

    static let nonRegisterState: [EntryCheck] = [
        // Activity state: 0-3, and only states IA32_VMX_MISC bits 8:6 advertise.
        EntryCheck("27.3.1.5", "guest activity state supported", .guestState) { c in
            let state = c.guestActivity
            return state == Activity.active || (state <= 3 && c.capabilities.misc & 1 << (5 + UInt64(state)) != 0)
        },
        EntryCheck("27.3.1.5", "guest HLT activity state requires SS.DPL 0", .guestState) {
            $0.guestActivity != Activity.hlt || $0.guest(.ss).dpl == 0
        },
        EntryCheck("27.3.1.5", "guest activity state active with STI or MOV-SS blocking", .guestState) {
            $0.guestInterruptibility & (blockingBySTI | blockingByMovSS) == 0 || $0.guestActivity == Activity.active
        },
        EntryCheck("27.3.1.5", "event injection allowed in the activity state", .guestState) {
            !$0.injecting || injectable(type: $0.injectionType, vector: $0.injectionVector, activity: $0.guestActivity)
        },
        EntryCheck("27.3.1.5", "wait-for-SIPI activity state with entry to SMM", .guestState) {
            !$0.entryControls.contains(.entryToSMM) || $0.guestActivity != Activity.waitForSIPI
        },
        // Interruptibility: bits 31:5 reserved; bit 4 (enclave interruption)
        // must be 0 too, as no SGX is offered.
        EntryCheck("27.3.1.5", "guest interruptibility reserved bits", .guestState) {
            $0.guestInterruptibility & 0xffff_fff0 == 0
        },
        EntryCheck("27.3.1.5", "guest STI and MOV-SS blocking not both set", .guestState) {
            $0.guestInterruptibility & (blockingBySTI | blockingByMovSS) != (blockingBySTI | blockingByMovSS)
        },
        EntryCheck("27.3.1.5", "guest STI blocking requires RFLAGS.IF", .guestState) {
            $0.guestInterruptibility & blockingBySTI == 0 || $0.isSet(.rflagsIF)
        },
        EntryCheck("27.3.1.5", "no STI or MOV-SS blocking when injecting an external interrupt", .guestState) {
            !$0.injecting(type: InterruptionType.externalInterrupt)
                || $0.guestInterruptibility & (blockingBySTI | blockingByMovSS) == 0
        },
        EntryCheck("27.3.1.5", "no MOV-SS blocking when injecting an NMI", .guestState) {
            !$0.injecting(type: InterruptionType.nmi) || $0.guestInterruptibility & blockingByMovSS == 0
        },
        EntryCheck("27.3.1.5", "SMI blocking outside SMM", .guestState) {
            $0.platform.inSMM || $0.guestInterruptibility & blockingBySMI == 0
        },
        EntryCheck("27.3.1.5", "SMI blocking with entry to SMM", .guestState) {
            !$0.entryControls.contains(.entryToSMM) || $0.guestInterruptibility & blockingBySMI != 0
        },
        EntryCheck("27.3.1.5", "no virtual-NMI blocking when injecting an NMI", .guestState) {
            !$0.pin.contains(.virtualNMIs) || !$0.injecting(type: InterruptionType.nmi)
                || $0.guestInterruptibility & blockingByNMI == 0
        },
        // Implementation-specific (27.3.1.5, 27.8): like processors that
        // enforce it, Terrapin refuses to inject an NMI under STI blocking.
        EntryCheck("27.3.1.5", "no STI blocking when injecting an NMI", .guestState,
                   qualification: EntryFailureQualification.nmiBlockedBySTI) {
            !$0.injecting(type: InterruptionType.nmi) || $0.guestInterruptibility & blockingBySTI == 0
        },
        // Pending debug exceptions: bits 11:4, 13, 15 and 63:17 are reserved;
        // bit 16 (RTM) too without RTM support.
        EntryCheck("27.3.1.5", "guest pending debug exceptions reserved bits", .guestState) { c in
            let reserved: UInt64 = 0xff0 | 1 << 13 | 1 << 15 | ~0 << 17 | (c.platform.supportsRTM ? 0 : pendingDebugRTM)
            return c.read(.guestPendingDebugExceptions) & reserved == 0
        },
        // With STI or MOV-SS blocking or in HLT, BS must be 1 exactly when
        // RFLAGS.TF = 1 and IA32_DEBUGCTL.BTF = 0.
        EntryCheck("27.3.1.5", "guest pending debug exceptions BS bit", .guestState) { c in
            guard c.guestInterruptibility & (blockingBySTI | blockingByMovSS) != 0 || c.guestActivity == Activity.hlt
            else { return true }
            let singleStep = c.isSet(.rflagsTF) && c.read(.guestIA32Debugctl) & 2 == 0
            return (c.read(.guestPendingDebugExceptions) & pendingDebugBS != 0) == singleStep
        },
        // RTM (bit 16): bits 11:0 and 14 clear, bit 12 set, no MOV-SS blocking.
        EntryCheck("27.3.1.5", "guest pending debug exceptions RTM bit", .guestState) { c in
            let pending = c.read(.guestPendingDebugExceptions)
            guard pending & pendingDebugRTM != 0 else { return true }
            return pending & (0xfff | pendingDebugBS) == pendingDebugEnabledBreakpoint
                && c.guestInterruptibility & blockingByMovSS == 0
        },
        // VMCS link pointer, unless FFFFFFFF_FFFFFFFFH: 4 KiB aligned within
        // MAXPHYADDR; the region holds our revision identifier in bits 30:0
        // and the "VMCS shadowing" control in bit 31; not the current VMCS
        // (outside SMM). Qualification 4.
        EntryCheck("27.3.1.5", "VMCS link pointer address", .guestState,
                   qualification: EntryFailureQualification.vmcsLinkPointer) { c in
            let link = c.read(.vmcsLinkPointer)
            return link == .max || c.validPageAddress(link)
        },
        EntryCheck("27.3.1.5", "VMCS link pointer revision identifier", .guestState,
                   qualification: EntryFailureQualification.vmcsLinkPointer) { c in
            let link = c.read(.vmcsLinkPointer)
            guard link != .max else { return true }
            guard let header = c.memory.load(UInt32.self, at: link) else { return false }
            let shadow: UInt32 = c.proc2.contains(.vmcsShadowing) ? 1 << 31 : 0
            return header == VMXCapabilities.revisionID & 0x7fff_ffff | shadow
        },
        EntryCheck("27.3.1.5", "VMCS link pointer not the current VMCS", .guestState,
                   qualification: EntryFailureQualification.vmcsLinkPointer) { c in
            let link = c.read(.vmcsLinkPointer)
            guard link != .max else { return true }
            if !c.platform.inSMM || c.entryControls.contains(.entryToSMM) { return link != c.vmcsAddress }
            return link != c.read(.executiveVMCSPointer)
        },
    ]

    // MARK: 27.3.1.6 PDPTEs

    /// PAE paging (CR0.PG = 1, CR4.PAE = 1, not IA-32e mode): each present
    /// PDPTE has reserved bits 2:1, 8:5 and 63:MAXPHYADDR clear. With EPT the
    /// PDPTE fields are checked; without, the four entries at CR3[31:5] are
    /// read from guest memory. Qualification 2.
    static let pdptes: [EntryCheck] = [
        EntryCheck("27.3.1.6", "guest PDPTEs", .guestState, qualification: EntryFailureQualification.pdpte) { c in
            guard c.guestCR0 & cr0PG != 0, c.guestCR4 & cr4PAE != 0, !c.ia32eModeGuest else { return true }
            let entries: [UInt64]
            if c.proc2.contains(.enableEPT) {
                entries = [.guestPDPTE0, .guestPDPTE1, .guestPDPTE2, .guestPDPTE3].map { c.read($0) }
            } else {
                let base = c.read(.guestCR3) & 0xffff_ffe0
                var loaded: [UInt64] = []
                for i in 0..<4 {
                    guard let e = c.memory.load(UInt64.self, at: base + 8 * UInt64(i)) else { return false }
                    loaded.append(e)
                }
                entries = loaded
            }
            let high: UInt64 = c.maxPhysicalAddressBits >= 64 ? 0 : ~0 << UInt64(c.maxPhysicalAddressBits)
            let reserved: UInt64 = 0x1e6 | high
            return entries.allSatisfy { $0 & 1 == 0 || $0 & reserved == 0 }
        },
    ]
}
