import VMXArch

// SDM Vol. 3C 27.2.2 "Checks on Host Control Registers, MSRs, and SSP",
// 27.2.3 "Checks on Host Segment and Descriptor-Table Registers" and 27.2.4
// "Checks Related to Address-Space Size". A failure is VMfailValid with
// error 8 ("VM entry with invalid host-state field(s)").

enum HostStateChecks {
    static let all: [EntryCheck] = registers + segments + addressSpaceSize

    static let efer = (lme: UInt64(1) << 8, lma: UInt64(1) << 10)

    // MARK: 27.2.2

    static let registers: [EntryCheck] = [
        EntryCheck("27.2.2", "host CR0 fixed bits", .hostState) { $0.capabilities.permitsCR0($0.read(.hostCR0)) },
        EntryCheck("27.2.2", "host CR4 fixed bits", .hostState) { $0.capabilities.permitsCR4($0.read(.hostCR4)) },
        EntryCheck("27.2.2", "host CR3 physical-address width", .hostState) { $0.withinPhysicalWidth($0.read(.hostCR3)) },
        EntryCheck("27.2.2", "host IA32_SYSENTER_ESP canonical", .hostState) { $0.isCanonical($0.read(.hostIA32SysenterESP)) },
        EntryCheck("27.2.2", "host IA32_SYSENTER_EIP canonical", .hostState) { $0.isCanonical($0.read(.hostIA32SysenterEIP)) },
        EntryCheck("27.2.2", "host IA32_PAT memory types", .hostState) {
            !$0.exitControls.contains(.loadPAT) || EntryContext.validPAT($0.read(.hostIA32PAT))
        },
        EntryCheck("27.2.2", "host IA32_EFER reserved bits", .hostState) {
            !$0.exitControls.contains(.loadEFER) || $0.read(.hostIA32EFER) & ~$0.platform.eferSupported == 0
        },
        // LMA and LME each equal "host address-space size".
        EntryCheck("27.2.2", "host IA32_EFER.LMA and LME match host address-space size", .hostState) { c in
            guard c.exitControls.contains(.loadEFER) else { return true }
            let value = c.read(.hostIA32EFER), want = c.hostAddressSpaceSize
            return (value & efer.lma != 0) == want && (value & efer.lme != 0) == want
        },
    ]

    // MARK: 27.2.3

    static let selectorFields: [VMCSField] = [
        .hostESSelector, .hostCSSelector, .hostSSSelector, .hostDSSelector, .hostFSSelector, .hostGSSelector,
        .hostTRSelector,
    ]

    static let segments: [EntryCheck] = [
        EntryCheck("27.2.3", "host selectors RPL and TI", .hostState) { c in
            selectorFields.allSatisfy { c.read16($0) & 7 == 0 }
        },
        EntryCheck("27.2.3", "host CS selector non-null", .hostState) { $0.read16(.hostCSSelector) != 0 },
        EntryCheck("27.2.3", "host TR selector non-null", .hostState) { $0.read16(.hostTRSelector) != 0 },
        EntryCheck("27.2.3", "host SS selector non-null without host address-space size", .hostState) {
            $0.hostAddressSpaceSize || $0.read16(.hostSSSelector) != 0
        },
        EntryCheck("27.2.3", "host FS, GS, GDTR, IDTR and TR bases canonical", .hostState) { c in
            [.hostFSBase, .hostGSBase, .hostGDTRBase, .hostIDTRBase, .hostTRBase].allSatisfy { c.isCanonical(c.read($0)) }
        },
    ]

    // MARK: 27.2.4

    static let addressSpaceSize: [EntryCheck] = [
        // Outside IA-32e mode, "IA-32e mode guest" and "host address-space
        // size" must be 0; in IA-32e mode "host address-space size" must be 1.
        EntryCheck("27.2.4", "IA-32e mode guest requires the processor in IA-32e mode", .hostState) {
            $0.platform.processorInIA32eMode || !$0.ia32eModeGuest
        },
        EntryCheck("27.2.4", "host address-space size matches IA-32e mode", .hostState) {
            $0.hostAddressSpaceSize == $0.platform.processorInIA32eMode
        },
        // Host address-space size 0: no IA-32e mode guest, CR4.PCIDE = 0, RIP
        // bits 63:32 zero.
        EntryCheck("27.2.4", "32-bit host: no IA-32e mode guest, CR4.PCIDE and RIP 63:32 zero", .hostState) { c in
            c.hostAddressSpaceSize
                || (!c.ia32eModeGuest && c.read(.hostCR4) & 1 << 17 == 0 && c.read(.hostRIP) >> 32 == 0)
        },
        // Host address-space size 1: CR4.PAE = 1, RIP canonical.
        EntryCheck("27.2.4", "64-bit host: CR4.PAE set and RIP canonical", .hostState) { c in
            !c.hostAddressSpaceSize || (c.read(.hostCR4) & 1 << 5 != 0 && c.isCanonical(c.read(.hostRIP)))
        },
    ]
}
