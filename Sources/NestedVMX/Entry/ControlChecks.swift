import VMXArch

// SDM Vol. 3C 27.2.1 "Checks on VMX Controls". A failure is VMfailValid
// with error 7 ("VM entry with invalid control field(s)").

extension EntryContext {
    /// The capability MSR value that governs a control field: the TRUE MSR
    /// when IA32_VMX_BASIC[55] is 1 (SDM A.3.1, A.3.2, A.4.1, A.5).
    func allowed(_ plain: UInt64, _ truth: UInt64) -> AllowedSettings {
        AllowedSettings(rawValue: usesTrueControls ? truth : plain)
    }

    var allowedPin: AllowedSettings { allowed(capabilities.pinBased, capabilities.truePinBased) }
    var allowedProc: AllowedSettings { allowed(capabilities.procBased, capabilities.trueProcBased) }
    var allowedProc2: AllowedSettings { AllowedSettings(rawValue: capabilities.procBased2) }
    var allowedExit: AllowedSettings { allowed(capabilities.exit, capabilities.trueExit) }
    var allowedEntry: AllowedSettings { allowed(capabilities.entry, capabilities.trueEntry) }
    var eptCaps: EPTVPIDCapabilities { EPTVPIDCapabilities(rawValue: capabilities.eptVPIDCap) }
}

/// Interruption types of the VM-entry interruption-information field (SDM 25.8.3).
enum InterruptionType {
    static let externalInterrupt: UInt32 = 0
    static let reserved: UInt32 = 1
    static let nmi: UInt32 = 2
    static let hardwareException: UInt32 = 3
    static let softwareInterrupt: UInt32 = 4
    static let privilegedSoftwareException: UInt32 = 5
    static let softwareException: UInt32 = 6
    static let otherEvent: UInt32 = 7
}

enum ControlChecks {
    /// Exceptions that push an error code: #DF, #TS, #NP, #SS, #GP, #PF, #AC
    /// (SDM 27.2.1.3) and #CP (21), which pushes one as well (Vol. 3A 6.15).
    static let errorCodeVectors: Set<UInt32> = [8, 10, 11, 12, 13, 14, 17, 21]

    static let all: [EntryCheck] = executionControls + exitControls + entryControls

    // MARK: 27.2.1.1 VM-execution control fields

    static let executionControls: [EntryCheck] = [
        EntryCheck("27.2.1.1", "pin-based controls reserved bits", .controls) {
            $0.allowedPin.permits($0.read32(.pinBasedControls))
        },
        EntryCheck("27.2.1.1", "primary processor-based controls reserved bits", .controls) {
            $0.allowedProc.permits($0.read32(.processorBasedControls))
        },
        // Checked only when "activate secondary controls" is 1.
        EntryCheck("27.2.1.1", "secondary processor-based controls reserved bits", .controls) {
            !$0.proc.contains(.activateSecondaryControls) || $0.allowedProc2.permits($0.read32(.secondaryProcessorBasedControls))
        },
        // "The CR3-target count must not be greater than 4", and no greater than
        // the values IA32_VMX_MISC[24:16] says exist (A.6): a count that names
        // CR3-target fields VMWRITE cannot reach is refused too.
        EntryCheck("27.2.1.1", "CR3-target count", .controls) {
            $0.read32(.cr3TargetCount) <= min(4, $0.capabilities.cr3TargetValues)
        },
        EntryCheck("27.2.1.1", "I/O bitmap A address", .controls) {
            !$0.proc.contains(.useIOBitmaps) || $0.validPageAddress($0.read(.ioBitmapA))
        },
        EntryCheck("27.2.1.1", "I/O bitmap B address", .controls) {
            !$0.proc.contains(.useIOBitmaps) || $0.validPageAddress($0.read(.ioBitmapB))
        },
        EntryCheck("27.2.1.1", "MSR bitmap address", .controls) {
            !$0.proc.contains(.useMSRBitmaps) || $0.validPageAddress($0.read(.msrBitmap))
        },
        EntryCheck("27.2.1.1", "virtual-APIC address", .controls) {
            !$0.proc.contains(.useTPRShadow) || $0.validPageAddress($0.read(.virtualAPICAddress))
        },
        // With a TPR shadow and without virtual-interrupt delivery, bits 31:4
        // of the TPR threshold are 0; without "virtualize APIC accesses" too,
        // bits 3:0 may not exceed VTPR bits 7:4 (byte 80H of the virtual-APIC page).
        EntryCheck("27.2.1.1", "TPR threshold", .controls) { c in
            guard c.proc.contains(.useTPRShadow), !c.proc2.contains(.virtualInterruptDelivery) else { return true }
            let threshold = c.read32(.tprThreshold)
            guard threshold & 0xffff_fff0 == 0 else { return false }
            if c.proc2.contains(.virtualizeAPICAccesses) { return true }
            guard let vtpr = c.memory.load(UInt8.self, at: c.read(.virtualAPICAddress) &+ 0x80) else { return false }
            return threshold & 0xf <= UInt32(vtpr >> 4)
        },
        EntryCheck("27.2.1.1", "APIC virtualization requires TPR shadow", .controls) { c in
            c.proc.contains(.useTPRShadow)
                || c.proc2.isDisjoint(with: [.virtualizeX2APICMode, .apicRegisterVirtualization, .virtualInterruptDelivery])
        },
        EntryCheck("27.2.1.1", "virtual NMIs require NMI exiting", .controls) {
            $0.pin.contains(.nmiExiting) || !$0.pin.contains(.virtualNMIs)
        },
        EntryCheck("27.2.1.1", "NMI-window exiting requires virtual NMIs", .controls) {
            $0.pin.contains(.virtualNMIs) || !$0.proc.contains(.nmiWindowExiting)
        },
        EntryCheck("27.2.1.1", "APIC-access address", .controls) {
            !$0.proc2.contains(.virtualizeAPICAccesses) || $0.validPageAddress($0.read(.apicAccessAddress))
        },
        EntryCheck("27.2.1.1", "virtualize x2APIC mode excludes virtualize APIC accesses", .controls) {
            !$0.proc2.isSuperset(of: [.virtualizeX2APICMode, .virtualizeAPICAccesses])
        },
        EntryCheck("27.2.1.1", "virtual-interrupt delivery requires external-interrupt exiting", .controls) {
            !$0.proc2.contains(.virtualInterruptDelivery) || $0.pin.contains(.externalInterruptExiting)
        },
        // Posted interrupts need virtual-interrupt delivery and "acknowledge
        // interrupt on exit", a notification vector below 256 and a 64-byte
        // aligned descriptor within MAXPHYADDR.
        EntryCheck("27.2.1.1", "posted-interrupt processing", .controls) { c in
            guard c.pin.contains(.processPostedInterrupts) else { return true }
            let descriptor = c.read(.postedInterruptDescriptorAddress)
            return c.proc2.contains(.virtualInterruptDelivery) && c.exitControls.contains(.acknowledgeInterruptOnExit)
                && c.read16(.postedInterruptNotificationVector) & 0xff00 == 0
                && descriptor & 0x3f == 0 && c.withinPhysicalWidth(descriptor)
        },
        EntryCheck("27.2.1.1", "VPID non-zero", .controls) {
            !$0.proc2.contains(.enableVPID) || $0.read16(.virtualProcessorID) != 0
        },
        // EPTP (25.6.11): a memory type IA32_VMX_EPT_VPID_CAP allows (UC bit 8,
        // WB bit 14), a supported page-walk length (4: bit 6, 5: bit 7), A/D
        // only if bit 21, supervisor shadow stack only if bit 23, bits 11:8
        // and 63:MAXPHYADDR zero.
        EntryCheck("27.2.1.1", "EPTP memory type", .controls) { c in
            guard c.proc2.contains(.enableEPT) else { return true }
            switch EPTPointer(rawValue: c.read(.eptPointer)).memoryType {
            case EPTPointer.memoryTypeUncacheable: return c.eptCaps.contains(.memoryTypeUC)
            case EPTPointer.memoryTypeWriteBack: return c.eptCaps.contains(.memoryTypeWB)
            default: return false
            }
        },
        EntryCheck("27.2.1.1", "EPTP page-walk length", .controls) { c in
            guard c.proc2.contains(.enableEPT) else { return true }
            switch EPTPointer(rawValue: c.read(.eptPointer)).pageWalkLevels {
            case 4: return c.eptCaps.contains(.pageWalkLength4)
            case 5: return c.eptCaps.contains(.pageWalkLength5)
            default: return false
            }
        },
        EntryCheck("27.2.1.1", "EPTP accessed and dirty flags", .controls) { c in
            !c.proc2.contains(.enableEPT) || !EPTPointer(rawValue: c.read(.eptPointer)).accessedDirtyEnabled
                || c.eptCaps.contains(.accessedDirty)
        },
        EntryCheck("27.2.1.1", "EPTP supervisor shadow-stack control", .controls) { c in
            !c.proc2.contains(.enableEPT) || !EPTPointer(rawValue: c.read(.eptPointer)).supervisorShadowStackEnabled
                || c.eptCaps.contains(.supervisorShadowStack)
        },
        EntryCheck("27.2.1.1", "EPTP reserved bits", .controls) { c in
            !c.proc2.contains(.enableEPT)
                || c.read(.eptPointer) & EPTPointer.reservedBits(physicalAddressWidth: c.maxPhysicalAddressBits) == 0
        },
        EntryCheck("27.2.1.1", "PML requires EPT and a valid PML address", .controls) { c in
            !c.proc2.contains(.enablePML) || (c.proc2.contains(.enableEPT) && c.validPageAddress(c.read(.pmlAddress)))
        },
        EntryCheck("27.2.1.1", "unrestricted guest requires EPT", .controls) {
            !$0.proc2.contains(.unrestrictedGuest) || $0.proc2.contains(.enableEPT)
        },
        EntryCheck("27.2.1.1", "mode-based execute control requires EPT", .controls) {
            !$0.proc2.contains(.modeBasedExecuteControl) || $0.proc2.contains(.enableEPT)
        },
        EntryCheck("27.2.1.1", "sub-page write permissions require EPT", .controls) {
            !$0.proc2.contains(.subPageWritePermissions) || $0.proc2.contains(.enableEPT)
        },
        // VM-function controls: only bits IA32_VMX_VMFUNC allows; EPTP
        // switching (bit 0) needs EPT and a valid EPTP-list address.
        EntryCheck("27.2.1.1", "VM-function controls", .controls) { c in
            guard c.proc2.contains(.enableVMFunctions) else { return true }
            let vmfunc = c.read(.vmFunctionControls)
            guard vmfunc & ~c.capabilities.vmfunc == 0 else { return false }
            return vmfunc & 1 == 0 || (c.proc2.contains(.enableEPT) && c.validPageAddress(c.read(.eptpListAddress)))
        },
        EntryCheck("27.2.1.1", "VMREAD and VMWRITE bitmap addresses", .controls) { c in
            !c.proc2.contains(.vmcsShadowing)
                || (c.validPageAddress(c.read(.vmreadBitmapAddress)) && c.validPageAddress(c.read(.vmwriteBitmapAddress)))
        },
        EntryCheck("27.2.1.1", "virtualization-exception information address", .controls) {
            !$0.proc2.contains(.eptViolationVE) || $0.validPageAddress($0.read(.virtualizationExceptionInfoAddress))
        },
    ]

    // MARK: 27.2.1.2 VM-exit control fields

    static let exitControls: [EntryCheck] = [
        EntryCheck("27.2.1.2", "VM-exit controls reserved bits", .controls) {
            $0.allowedExit.permits($0.read32(.exitControls))
        },
        EntryCheck("27.2.1.2", "save VMX-preemption timer requires activate VMX-preemption timer", .controls) {
            $0.pin.contains(.activatePreemptionTimer) || !$0.exitControls.contains(.savePreemptionTimer)
        },
        EntryCheck("27.2.1.2", "VM-exit MSR-store address", .controls) {
            $0.validMSRArea(address: $0.read(.exitMSRStoreAddress), count: $0.read32(.exitMSRStoreCount))
        },
        EntryCheck("27.2.1.2", "VM-exit MSR-load address", .controls) {
            $0.validMSRArea(address: $0.read(.exitMSRLoadAddress), count: $0.read32(.exitMSRLoadCount))
        },
    ]

    // MARK: 27.2.1.3 VM-entry control fields

    static let entryControls: [EntryCheck] = [
        EntryCheck("27.2.1.3", "VM-entry controls reserved bits", .controls) {
            $0.allowedEntry.permits($0.read32(.entryControls))
        },
        // Event injection (valid bit 31 set). Type 1 is reserved; type 7
        // (other event) needs support for "monitor trap flag".
        EntryCheck("27.2.1.3", "event injection interruption type", .controls) { c in
            guard c.injecting else { return true }
            switch c.injectionType {
            case InterruptionType.reserved: return false
            case InterruptionType.otherEvent:
                return c.allowedProc.allowed1 & ProcessorBasedControls.monitorTrapFlag.rawValue != 0
            default: return true
            }
        },
        // NMI: vector 2. Hardware exception: vector <= 31. Other event: vector 0
        // (pending MTF VM exit).
        EntryCheck("27.2.1.3", "event injection vector", .controls) { c in
            guard c.injecting else { return true }
            switch c.injectionType {
            case InterruptionType.nmi: return c.injectionVector == 2
            case InterruptionType.hardwareException: return c.injectionVector <= 31
            case InterruptionType.otherEvent: return c.injectionVector == 0
            default: return true
            }
        },
        // Deliver-error-code (bit 11) must be 0 unless the type is hardware
        // exception and the guest is in protected mode: the CR0 field has
        // PE = 1, or "unrestricted guest" is 0, where PE counts as 1 (the
        // guest-state checks, which come later, require it). With
        // IA32_VMX_BASIC[56] = 0 it must then be 1 exactly for the vectors
        // that push an error code.
        EntryCheck("27.2.1.3", "event injection deliver-error-code bit", .controls) { c in
            guard c.injecting else { return true }
            let deliver = c.injection & 1 << 11 != 0
            let protectedMode = c.guestCR0 & 1 != 0 || !c.unrestrictedGuest
            guard c.injectionType == InterruptionType.hardwareException, protectedMode else { return !deliver }
            if c.capabilities.basic & 1 << 56 != 0 { return true }
            return deliver == ControlChecks.errorCodeVectors.contains(c.injectionVector)
        },
        EntryCheck("27.2.1.3", "event injection reserved bits 30:12", .controls) {
            !$0.injecting || $0.injection & 0x7fff_f000 == 0
        },
        EntryCheck("27.2.1.3", "event injection error code bits 31:16", .controls) { c in
            !c.injecting || c.injection & 1 << 11 == 0 || c.read32(.entryExceptionErrorCode) & 0xffff_0000 == 0
        },
        // Software interrupt / privileged software exception / software
        // exception: instruction length 1-15, or 0 if IA32_VMX_MISC[30].
        EntryCheck("27.2.1.3", "event injection instruction length", .controls) { c in
            guard c.injecting, [InterruptionType.softwareInterrupt, InterruptionType.privilegedSoftwareException,
                                InterruptionType.softwareException].contains(c.injectionType) else { return true }
            let length = c.read32(.entryInstructionLength)
            return length <= 15 && (length != 0 || c.capabilities.misc & 1 << 30 != 0)
        },
        EntryCheck("27.2.1.3", "VM-entry MSR-load address", .controls) {
            $0.validMSRArea(address: $0.read(.entryMSRLoadAddress), count: $0.read32(.entryMSRLoadCount))
        },
        // Outside SMM "entry to SMM" and "deactivate dual-monitor treatment"
        // must be 0; inside SMM they may not both be 1.
        EntryCheck("27.2.1.3", "entry to SMM and deactivate dual-monitor treatment", .controls) { c in
            let smm = c.entryControls.intersection([.entryToSMM, .deactivateDualMonitor])
            return c.platform.inSMM ? smm != [.entryToSMM, .deactivateDualMonitor] : smm.isEmpty
        },
    ]
}
