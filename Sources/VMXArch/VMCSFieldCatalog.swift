// Every VMCS field of SDM Vol. 3C Appendix B "Field Encoding in VMCS", by its
// full encoding. Tables B-1 to B-15. High-access encodings of 64-bit fields are
// `field.high!` (full | 1).
//
// Fields included beyond the classic set (encodings cross-checked against
// Linux arch/x86/include/asm/vmx.h, Bochs cpu/vmx.h and an Appendix B
// transcription): HLAT prefix size, last PID-pointer index, guest UINV,
// executive-VMCS pointer, SPP table pointer, TSC multiplier, tertiary
// controls, ENCLV-exiting bitmap, PASID directory addresses, shared EPTP,
// PCONFIG-exiting bitmap, HLATP, PID-pointer table, secondary VM-exit
// controls, IA32_SPEC_CTRL mask/shadow, guest IA32_LBR_CTL, guest/host
// IA32_PKRS, instruction-timeout control, guest/host CET state.
// Deliberately left out (not confirmed in Appendix B): FRED state
// (0x281a..., 0x2c08...), injected/original-event data, MSR data (0x2402),
// guest/host IA32_SPEC_CTRL (0x282e/0x2c1a), APIC-timer virtualization fields.

extension VMCSField {
    struct Entry: Sendable {
        let field: VMCSField
        let name: String
        init(_ field: VMCSField, _ name: String) {
            self.field = field
            self.name = name
        }
    }

    // MARK: B.1.1 16-bit control fields (Table B-1)
    public static let virtualProcessorID = VMCSField(0x0000)
    public static let postedInterruptNotificationVector = VMCSField(0x0002)
    public static let eptpIndex = VMCSField(0x0004)
    public static let hlatPrefixSize = VMCSField(0x0006)
    public static let lastPIDPointerIndex = VMCSField(0x0008)

    // MARK: B.1.2 16-bit guest-state fields (Table B-2)
    public static let guestESSelector = VMCSField(0x0800)
    public static let guestCSSelector = VMCSField(0x0802)
    public static let guestSSSelector = VMCSField(0x0804)
    public static let guestDSSelector = VMCSField(0x0806)
    public static let guestFSSelector = VMCSField(0x0808)
    public static let guestGSSelector = VMCSField(0x080a)
    public static let guestLDTRSelector = VMCSField(0x080c)
    public static let guestTRSelector = VMCSField(0x080e)
    public static let guestInterruptStatus = VMCSField(0x0810)
    public static let guestPMLIndex = VMCSField(0x0812)
    public static let guestUINV = VMCSField(0x0814)

    // MARK: B.1.3 16-bit host-state fields (Table B-3)
    public static let hostESSelector = VMCSField(0x0c00)
    public static let hostCSSelector = VMCSField(0x0c02)
    public static let hostSSSelector = VMCSField(0x0c04)
    public static let hostDSSelector = VMCSField(0x0c06)
    public static let hostFSSelector = VMCSField(0x0c08)
    public static let hostGSSelector = VMCSField(0x0c0a)
    public static let hostTRSelector = VMCSField(0x0c0c)

    // MARK: B.2.1 64-bit control fields (Table B-4)
    public static let ioBitmapA = VMCSField(0x2000)
    public static let ioBitmapB = VMCSField(0x2002)
    public static let msrBitmap = VMCSField(0x2004)
    public static let exitMSRStoreAddress = VMCSField(0x2006)
    public static let exitMSRLoadAddress = VMCSField(0x2008)
    public static let entryMSRLoadAddress = VMCSField(0x200a)
    public static let executiveVMCSPointer = VMCSField(0x200c)
    public static let pmlAddress = VMCSField(0x200e)
    public static let tscOffset = VMCSField(0x2010)
    public static let virtualAPICAddress = VMCSField(0x2012)
    public static let apicAccessAddress = VMCSField(0x2014)
    public static let postedInterruptDescriptorAddress = VMCSField(0x2016)
    public static let vmFunctionControls = VMCSField(0x2018)
    public static let eptPointer = VMCSField(0x201a)
    public static let eoiExitBitmap0 = VMCSField(0x201c)
    public static let eoiExitBitmap1 = VMCSField(0x201e)
    public static let eoiExitBitmap2 = VMCSField(0x2020)
    public static let eoiExitBitmap3 = VMCSField(0x2022)
    public static let eptpListAddress = VMCSField(0x2024)
    public static let vmreadBitmapAddress = VMCSField(0x2026)
    public static let vmwriteBitmapAddress = VMCSField(0x2028)
    public static let virtualizationExceptionInfoAddress = VMCSField(0x202a)
    public static let xssExitingBitmap = VMCSField(0x202c)
    public static let enclsExitingBitmap = VMCSField(0x202e)
    public static let subPagePermissionTablePointer = VMCSField(0x2030)
    public static let tscMultiplier = VMCSField(0x2032)
    public static let tertiaryProcessorBasedControls = VMCSField(0x2034)
    public static let enclvExitingBitmap = VMCSField(0x2036)
    public static let lowPASIDDirectoryAddress = VMCSField(0x2038)
    public static let highPASIDDirectoryAddress = VMCSField(0x203a)
    public static let sharedEPTPointer = VMCSField(0x203c)
    public static let pconfigExitingBitmap = VMCSField(0x203e)
    public static let hlatPointer = VMCSField(0x2040)
    public static let pidPointerTableAddress = VMCSField(0x2042)
    public static let secondaryExitControls = VMCSField(0x2044)
    public static let ia32SpecCtrlMask = VMCSField(0x204a)
    public static let ia32SpecCtrlShadow = VMCSField(0x204c)

    // MARK: B.2.2 64-bit read-only data fields (Table B-5)
    public static let guestPhysicalAddress = VMCSField(0x2400)

    // MARK: B.2.3 64-bit guest-state fields (Table B-6)
    public static let vmcsLinkPointer = VMCSField(0x2800)
    public static let guestIA32Debugctl = VMCSField(0x2802)
    public static let guestIA32PAT = VMCSField(0x2804)
    public static let guestIA32EFER = VMCSField(0x2806)
    public static let guestIA32PerfGlobalCtrl = VMCSField(0x2808)
    public static let guestPDPTE0 = VMCSField(0x280a)
    public static let guestPDPTE1 = VMCSField(0x280c)
    public static let guestPDPTE2 = VMCSField(0x280e)
    public static let guestPDPTE3 = VMCSField(0x2810)
    public static let guestIA32BNDCFGS = VMCSField(0x2812)
    public static let guestIA32RTITCtl = VMCSField(0x2814)
    public static let guestIA32LBRCtl = VMCSField(0x2816)
    public static let guestIA32PKRS = VMCSField(0x2818)

    // MARK: B.2.4 64-bit host-state fields (Table B-7)
    public static let hostIA32PAT = VMCSField(0x2c00)
    public static let hostIA32EFER = VMCSField(0x2c02)
    public static let hostIA32PerfGlobalCtrl = VMCSField(0x2c04)
    public static let hostIA32PKRS = VMCSField(0x2c06)

    // MARK: B.3.1 32-bit control fields (Table B-8)
    public static let pinBasedControls = VMCSField(0x4000)
    public static let processorBasedControls = VMCSField(0x4002)
    public static let exceptionBitmap = VMCSField(0x4004)
    public static let pageFaultErrorCodeMask = VMCSField(0x4006)
    public static let pageFaultErrorCodeMatch = VMCSField(0x4008)
    public static let cr3TargetCount = VMCSField(0x400a)
    public static let exitControls = VMCSField(0x400c)
    public static let exitMSRStoreCount = VMCSField(0x400e)
    public static let exitMSRLoadCount = VMCSField(0x4010)
    public static let entryControls = VMCSField(0x4012)
    public static let entryMSRLoadCount = VMCSField(0x4014)
    public static let entryInterruptionInfo = VMCSField(0x4016)
    public static let entryExceptionErrorCode = VMCSField(0x4018)
    public static let entryInstructionLength = VMCSField(0x401a)
    public static let tprThreshold = VMCSField(0x401c)
    public static let secondaryProcessorBasedControls = VMCSField(0x401e)
    public static let pleGap = VMCSField(0x4020)
    public static let pleWindow = VMCSField(0x4022)
    public static let instructionTimeoutControl = VMCSField(0x4024)

    // MARK: B.3.2 32-bit read-only data fields (Table B-9)
    public static let vmInstructionError = VMCSField(0x4400)
    public static let exitReason = VMCSField(0x4402)
    public static let exitInterruptionInfo = VMCSField(0x4404)
    public static let exitInterruptionErrorCode = VMCSField(0x4406)
    public static let idtVectoringInfo = VMCSField(0x4408)
    public static let idtVectoringErrorCode = VMCSField(0x440a)
    public static let exitInstructionLength = VMCSField(0x440c)
    public static let vmxInstructionInfo = VMCSField(0x440e)

    // MARK: B.3.3 32-bit guest-state fields (Table B-10)
    public static let guestESLimit = VMCSField(0x4800)
    public static let guestCSLimit = VMCSField(0x4802)
    public static let guestSSLimit = VMCSField(0x4804)
    public static let guestDSLimit = VMCSField(0x4806)
    public static let guestFSLimit = VMCSField(0x4808)
    public static let guestGSLimit = VMCSField(0x480a)
    public static let guestLDTRLimit = VMCSField(0x480c)
    public static let guestTRLimit = VMCSField(0x480e)
    public static let guestGDTRLimit = VMCSField(0x4810)
    public static let guestIDTRLimit = VMCSField(0x4812)
    public static let guestESAccessRights = VMCSField(0x4814)
    public static let guestCSAccessRights = VMCSField(0x4816)
    public static let guestSSAccessRights = VMCSField(0x4818)
    public static let guestDSAccessRights = VMCSField(0x481a)
    public static let guestFSAccessRights = VMCSField(0x481c)
    public static let guestGSAccessRights = VMCSField(0x481e)
    public static let guestLDTRAccessRights = VMCSField(0x4820)
    public static let guestTRAccessRights = VMCSField(0x4822)
    public static let guestInterruptibilityState = VMCSField(0x4824)
    public static let guestActivityState = VMCSField(0x4826)
    public static let guestSMBASE = VMCSField(0x4828)
    public static let guestIA32SysenterCS = VMCSField(0x482a)
    public static let guestVMXPreemptionTimerValue = VMCSField(0x482e)

    // MARK: B.3.4 32-bit host-state field (Table B-11)
    public static let hostIA32SysenterCS = VMCSField(0x4c00)

    // MARK: B.4.1 natural-width control fields (Table B-12)
    public static let cr0GuestHostMask = VMCSField(0x6000)
    public static let cr4GuestHostMask = VMCSField(0x6002)
    public static let cr0ReadShadow = VMCSField(0x6004)
    public static let cr4ReadShadow = VMCSField(0x6006)
    public static let cr3TargetValue0 = VMCSField(0x6008)
    public static let cr3TargetValue1 = VMCSField(0x600a)
    public static let cr3TargetValue2 = VMCSField(0x600c)
    public static let cr3TargetValue3 = VMCSField(0x600e)

    // MARK: B.4.2 natural-width read-only data fields (Table B-13)
    public static let exitQualification = VMCSField(0x6400)
    public static let ioRCX = VMCSField(0x6402)
    public static let ioRSI = VMCSField(0x6404)
    public static let ioRDI = VMCSField(0x6406)
    public static let ioRIP = VMCSField(0x6408)
    public static let guestLinearAddress = VMCSField(0x640a)

    // MARK: B.4.3 natural-width guest-state fields (Table B-14)
    public static let guestCR0 = VMCSField(0x6800)
    public static let guestCR3 = VMCSField(0x6802)
    public static let guestCR4 = VMCSField(0x6804)
    public static let guestESBase = VMCSField(0x6806)
    public static let guestCSBase = VMCSField(0x6808)
    public static let guestSSBase = VMCSField(0x680a)
    public static let guestDSBase = VMCSField(0x680c)
    public static let guestFSBase = VMCSField(0x680e)
    public static let guestGSBase = VMCSField(0x6810)
    public static let guestLDTRBase = VMCSField(0x6812)
    public static let guestTRBase = VMCSField(0x6814)
    public static let guestGDTRBase = VMCSField(0x6816)
    public static let guestIDTRBase = VMCSField(0x6818)
    public static let guestDR7 = VMCSField(0x681a)
    public static let guestRSP = VMCSField(0x681c)
    public static let guestRIP = VMCSField(0x681e)
    public static let guestRFLAGS = VMCSField(0x6820)
    public static let guestPendingDebugExceptions = VMCSField(0x6822)
    public static let guestIA32SysenterESP = VMCSField(0x6824)
    public static let guestIA32SysenterEIP = VMCSField(0x6826)
    public static let guestSCET = VMCSField(0x6828)
    public static let guestSSP = VMCSField(0x682a)
    public static let guestIntrSSPTable = VMCSField(0x682c)

    // MARK: B.4.4 natural-width host-state fields (Table B-15)
    public static let hostCR0 = VMCSField(0x6c00)
    public static let hostCR3 = VMCSField(0x6c02)
    public static let hostCR4 = VMCSField(0x6c04)
    public static let hostFSBase = VMCSField(0x6c06)
    public static let hostGSBase = VMCSField(0x6c08)
    public static let hostTRBase = VMCSField(0x6c0a)
    public static let hostGDTRBase = VMCSField(0x6c0c)
    public static let hostIDTRBase = VMCSField(0x6c0e)
    public static let hostIA32SysenterESP = VMCSField(0x6c10)
    public static let hostIA32SysenterEIP = VMCSField(0x6c12)
    public static let hostRSP = VMCSField(0x6c14)
    public static let hostRIP = VMCSField(0x6c16)
    public static let hostSCET = VMCSField(0x6c18)
    public static let hostSSP = VMCSField(0x6c1a)
    public static let hostIntrSSPTable = VMCSField(0x6c1c)

    /// Every field above with its Linux-style name (arch/x86/include/asm/vmx.h
    /// spelling where Linux has one).
    static let catalog: [Entry] = [
        Entry(virtualProcessorID, "VIRTUAL_PROCESSOR_ID"),
        Entry(postedInterruptNotificationVector, "POSTED_INTR_NV"),
        Entry(eptpIndex, "EPTP_INDEX"),
        Entry(hlatPrefixSize, "HLAT_PREFIX_SIZE"),
        Entry(lastPIDPointerIndex, "LAST_PID_POINTER_INDEX"),
        Entry(guestESSelector, "GUEST_ES_SELECTOR"),
        Entry(guestCSSelector, "GUEST_CS_SELECTOR"),
        Entry(guestSSSelector, "GUEST_SS_SELECTOR"),
        Entry(guestDSSelector, "GUEST_DS_SELECTOR"),
        Entry(guestFSSelector, "GUEST_FS_SELECTOR"),
        Entry(guestGSSelector, "GUEST_GS_SELECTOR"),
        Entry(guestLDTRSelector, "GUEST_LDTR_SELECTOR"),
        Entry(guestTRSelector, "GUEST_TR_SELECTOR"),
        Entry(guestInterruptStatus, "GUEST_INTR_STATUS"),
        Entry(guestPMLIndex, "GUEST_PML_INDEX"),
        Entry(guestUINV, "GUEST_UINV"),
        Entry(hostESSelector, "HOST_ES_SELECTOR"),
        Entry(hostCSSelector, "HOST_CS_SELECTOR"),
        Entry(hostSSSelector, "HOST_SS_SELECTOR"),
        Entry(hostDSSelector, "HOST_DS_SELECTOR"),
        Entry(hostFSSelector, "HOST_FS_SELECTOR"),
        Entry(hostGSSelector, "HOST_GS_SELECTOR"),
        Entry(hostTRSelector, "HOST_TR_SELECTOR"),
        Entry(ioBitmapA, "IO_BITMAP_A"),
        Entry(ioBitmapB, "IO_BITMAP_B"),
        Entry(msrBitmap, "MSR_BITMAP"),
        Entry(exitMSRStoreAddress, "VM_EXIT_MSR_STORE_ADDR"),
        Entry(exitMSRLoadAddress, "VM_EXIT_MSR_LOAD_ADDR"),
        Entry(entryMSRLoadAddress, "VM_ENTRY_MSR_LOAD_ADDR"),
        Entry(executiveVMCSPointer, "EXECUTIVE_VMCS_POINTER"),
        Entry(pmlAddress, "PML_ADDRESS"),
        Entry(tscOffset, "TSC_OFFSET"),
        Entry(virtualAPICAddress, "VIRTUAL_APIC_PAGE_ADDR"),
        Entry(apicAccessAddress, "APIC_ACCESS_ADDR"),
        Entry(postedInterruptDescriptorAddress, "POSTED_INTR_DESC_ADDR"),
        Entry(vmFunctionControls, "VM_FUNCTION_CONTROL"),
        Entry(eptPointer, "EPT_POINTER"),
        Entry(eoiExitBitmap0, "EOI_EXIT_BITMAP0"),
        Entry(eoiExitBitmap1, "EOI_EXIT_BITMAP1"),
        Entry(eoiExitBitmap2, "EOI_EXIT_BITMAP2"),
        Entry(eoiExitBitmap3, "EOI_EXIT_BITMAP3"),
        Entry(eptpListAddress, "EPTP_LIST_ADDRESS"),
        Entry(vmreadBitmapAddress, "VMREAD_BITMAP"),
        Entry(vmwriteBitmapAddress, "VMWRITE_BITMAP"),
        Entry(virtualizationExceptionInfoAddress, "VE_INFORMATION_ADDRESS"),
        Entry(xssExitingBitmap, "XSS_EXIT_BITMAP"),
        Entry(enclsExitingBitmap, "ENCLS_EXITING_BITMAP"),
        Entry(subPagePermissionTablePointer, "SPPT_POINTER"),
        Entry(tscMultiplier, "TSC_MULTIPLIER"),
        Entry(tertiaryProcessorBasedControls, "TERTIARY_VM_EXEC_CONTROL"),
        Entry(enclvExitingBitmap, "ENCLV_EXITING_BITMAP"),
        Entry(lowPASIDDirectoryAddress, "LOW_PASID_DIRECTORY_ADDR"),
        Entry(highPASIDDirectoryAddress, "HIGH_PASID_DIRECTORY_ADDR"),
        Entry(sharedEPTPointer, "SHARED_EPT_POINTER"),
        Entry(pconfigExitingBitmap, "PCONFIG_EXITING_BITMAP"),
        Entry(hlatPointer, "HLAT_POINTER"),
        Entry(pidPointerTableAddress, "PID_POINTER_TABLE"),
        Entry(secondaryExitControls, "SECONDARY_VM_EXIT_CONTROLS"),
        Entry(ia32SpecCtrlMask, "IA32_SPEC_CTRL_MASK"),
        Entry(ia32SpecCtrlShadow, "IA32_SPEC_CTRL_SHADOW"),
        Entry(guestPhysicalAddress, "GUEST_PHYSICAL_ADDRESS"),
        Entry(vmcsLinkPointer, "VMCS_LINK_POINTER"),
        Entry(guestIA32Debugctl, "GUEST_IA32_DEBUGCTL"),
        Entry(guestIA32PAT, "GUEST_IA32_PAT"),
        Entry(guestIA32EFER, "GUEST_IA32_EFER"),
        Entry(guestIA32PerfGlobalCtrl, "GUEST_IA32_PERF_GLOBAL_CTRL"),
        Entry(guestPDPTE0, "GUEST_PDPTR0"),
        Entry(guestPDPTE1, "GUEST_PDPTR1"),
        Entry(guestPDPTE2, "GUEST_PDPTR2"),
        Entry(guestPDPTE3, "GUEST_PDPTR3"),
        Entry(guestIA32BNDCFGS, "GUEST_BNDCFGS"),
        Entry(guestIA32RTITCtl, "GUEST_IA32_RTIT_CTL"),
        Entry(guestIA32LBRCtl, "GUEST_IA32_LBR_CTL"),
        Entry(guestIA32PKRS, "GUEST_IA32_PKRS"),
        Entry(hostIA32PAT, "HOST_IA32_PAT"),
        Entry(hostIA32EFER, "HOST_IA32_EFER"),
        Entry(hostIA32PerfGlobalCtrl, "HOST_IA32_PERF_GLOBAL_CTRL"),
        Entry(hostIA32PKRS, "HOST_IA32_PKRS"),
        Entry(pinBasedControls, "PIN_BASED_VM_EXEC_CONTROL"),
        Entry(processorBasedControls, "CPU_BASED_VM_EXEC_CONTROL"),
        Entry(exceptionBitmap, "EXCEPTION_BITMAP"),
        Entry(pageFaultErrorCodeMask, "PAGE_FAULT_ERROR_CODE_MASK"),
        Entry(pageFaultErrorCodeMatch, "PAGE_FAULT_ERROR_CODE_MATCH"),
        Entry(cr3TargetCount, "CR3_TARGET_COUNT"),
        Entry(exitControls, "VM_EXIT_CONTROLS"),
        Entry(exitMSRStoreCount, "VM_EXIT_MSR_STORE_COUNT"),
        Entry(exitMSRLoadCount, "VM_EXIT_MSR_LOAD_COUNT"),
        Entry(entryControls, "VM_ENTRY_CONTROLS"),
        Entry(entryMSRLoadCount, "VM_ENTRY_MSR_LOAD_COUNT"),
        Entry(entryInterruptionInfo, "VM_ENTRY_INTR_INFO_FIELD"),
        Entry(entryExceptionErrorCode, "VM_ENTRY_EXCEPTION_ERROR_CODE"),
        Entry(entryInstructionLength, "VM_ENTRY_INSTRUCTION_LEN"),
        Entry(tprThreshold, "TPR_THRESHOLD"),
        Entry(secondaryProcessorBasedControls, "SECONDARY_VM_EXEC_CONTROL"),
        Entry(pleGap, "PLE_GAP"),
        Entry(pleWindow, "PLE_WINDOW"),
        Entry(instructionTimeoutControl, "INSTRUCTION_TIMEOUT_CONTROL"),
        Entry(vmInstructionError, "VM_INSTRUCTION_ERROR"),
        Entry(exitReason, "VM_EXIT_REASON"),
        Entry(exitInterruptionInfo, "VM_EXIT_INTR_INFO"),
        Entry(exitInterruptionErrorCode, "VM_EXIT_INTR_ERROR_CODE"),
        Entry(idtVectoringInfo, "IDT_VECTORING_INFO_FIELD"),
        Entry(idtVectoringErrorCode, "IDT_VECTORING_ERROR_CODE"),
        Entry(exitInstructionLength, "VM_EXIT_INSTRUCTION_LEN"),
        Entry(vmxInstructionInfo, "VMX_INSTRUCTION_INFO"),
        Entry(guestESLimit, "GUEST_ES_LIMIT"),
        Entry(guestCSLimit, "GUEST_CS_LIMIT"),
        Entry(guestSSLimit, "GUEST_SS_LIMIT"),
        Entry(guestDSLimit, "GUEST_DS_LIMIT"),
        Entry(guestFSLimit, "GUEST_FS_LIMIT"),
        Entry(guestGSLimit, "GUEST_GS_LIMIT"),
        Entry(guestLDTRLimit, "GUEST_LDTR_LIMIT"),
        Entry(guestTRLimit, "GUEST_TR_LIMIT"),
        Entry(guestGDTRLimit, "GUEST_GDTR_LIMIT"),
        Entry(guestIDTRLimit, "GUEST_IDTR_LIMIT"),
        Entry(guestESAccessRights, "GUEST_ES_AR_BYTES"),
        Entry(guestCSAccessRights, "GUEST_CS_AR_BYTES"),
        Entry(guestSSAccessRights, "GUEST_SS_AR_BYTES"),
        Entry(guestDSAccessRights, "GUEST_DS_AR_BYTES"),
        Entry(guestFSAccessRights, "GUEST_FS_AR_BYTES"),
        Entry(guestGSAccessRights, "GUEST_GS_AR_BYTES"),
        Entry(guestLDTRAccessRights, "GUEST_LDTR_AR_BYTES"),
        Entry(guestTRAccessRights, "GUEST_TR_AR_BYTES"),
        Entry(guestInterruptibilityState, "GUEST_INTERRUPTIBILITY_INFO"),
        Entry(guestActivityState, "GUEST_ACTIVITY_STATE"),
        Entry(guestSMBASE, "GUEST_SMBASE"),
        Entry(guestIA32SysenterCS, "GUEST_SYSENTER_CS"),
        Entry(guestVMXPreemptionTimerValue, "VMX_PREEMPTION_TIMER_VALUE"),
        Entry(hostIA32SysenterCS, "HOST_IA32_SYSENTER_CS"),
        Entry(cr0GuestHostMask, "CR0_GUEST_HOST_MASK"),
        Entry(cr4GuestHostMask, "CR4_GUEST_HOST_MASK"),
        Entry(cr0ReadShadow, "CR0_READ_SHADOW"),
        Entry(cr4ReadShadow, "CR4_READ_SHADOW"),
        Entry(cr3TargetValue0, "CR3_TARGET_VALUE0"),
        Entry(cr3TargetValue1, "CR3_TARGET_VALUE1"),
        Entry(cr3TargetValue2, "CR3_TARGET_VALUE2"),
        Entry(cr3TargetValue3, "CR3_TARGET_VALUE3"),
        Entry(exitQualification, "EXIT_QUALIFICATION"),
        Entry(ioRCX, "IO_RCX"),
        Entry(ioRSI, "IO_RSI"),
        Entry(ioRDI, "IO_RDI"),
        Entry(ioRIP, "IO_RIP"),
        Entry(guestLinearAddress, "GUEST_LINEAR_ADDRESS"),
        Entry(guestCR0, "GUEST_CR0"),
        Entry(guestCR3, "GUEST_CR3"),
        Entry(guestCR4, "GUEST_CR4"),
        Entry(guestESBase, "GUEST_ES_BASE"),
        Entry(guestCSBase, "GUEST_CS_BASE"),
        Entry(guestSSBase, "GUEST_SS_BASE"),
        Entry(guestDSBase, "GUEST_DS_BASE"),
        Entry(guestFSBase, "GUEST_FS_BASE"),
        Entry(guestGSBase, "GUEST_GS_BASE"),
        Entry(guestLDTRBase, "GUEST_LDTR_BASE"),
        Entry(guestTRBase, "GUEST_TR_BASE"),
        Entry(guestGDTRBase, "GUEST_GDTR_BASE"),
        Entry(guestIDTRBase, "GUEST_IDTR_BASE"),
        Entry(guestDR7, "GUEST_DR7"),
        Entry(guestRSP, "GUEST_RSP"),
        Entry(guestRIP, "GUEST_RIP"),
        Entry(guestRFLAGS, "GUEST_RFLAGS"),
        Entry(guestPendingDebugExceptions, "GUEST_PENDING_DBG_EXCEPTIONS"),
        Entry(guestIA32SysenterESP, "GUEST_SYSENTER_ESP"),
        Entry(guestIA32SysenterEIP, "GUEST_SYSENTER_EIP"),
        Entry(guestSCET, "GUEST_S_CET"),
        Entry(guestSSP, "GUEST_SSP"),
        Entry(guestIntrSSPTable, "GUEST_INTR_SSP_TABLE"),
        Entry(hostCR0, "HOST_CR0"),
        Entry(hostCR3, "HOST_CR3"),
        Entry(hostCR4, "HOST_CR4"),
        Entry(hostFSBase, "HOST_FS_BASE"),
        Entry(hostGSBase, "HOST_GS_BASE"),
        Entry(hostTRBase, "HOST_TR_BASE"),
        Entry(hostGDTRBase, "HOST_GDTR_BASE"),
        Entry(hostIDTRBase, "HOST_IDTR_BASE"),
        Entry(hostIA32SysenterESP, "HOST_IA32_SYSENTER_ESP"),
        Entry(hostIA32SysenterEIP, "HOST_IA32_SYSENTER_EIP"),
        Entry(hostRSP, "HOST_RSP"),
        Entry(hostRIP, "HOST_RIP"),
        Entry(hostSCET, "HOST_S_CET"),
        Entry(hostSSP, "HOST_SSP"),
        Entry(hostIntrSSPTable, "HOST_INTR_SSP_TABLE"),
    ]
}
