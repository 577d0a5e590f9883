import VMXArch
import XCTest

/// The VMX vocabulary against the SDM (Vol. 3C Appendices A-C, 25.6-25.11, 31.4).
final class VMXArchTests: XCTestCase {
    // MARK: VMCS field encodings (25.11.2, Appendix B)

    func testEveryFieldDecodesToItsOwnEncoding() {
        for field in VMCSField.allFields {
            let raw = field.rawValue
            XCTAssertEqual(field.width.rawValue, UInt8((raw >> 13) & 3), field.name)
            XCTAssertEqual(field.kind.rawValue, UInt8((raw >> 10) & 3), field.name)
            XCTAssertEqual(field.index, UInt16((raw >> 1) & 0x1ff), field.name)
            XCTAssertFalse(field.isHighAccess, field.name)
            XCTAssertFalse(field.hasReservedBitsSet, field.name)
            XCTAssertEqual(field.full, field, field.name)
            XCTAssertTrue(field.isKnown, field.name)
            let rebuilt = VMCSField(width: field.width, kind: field.kind, index: field.index)
            XCTAssertEqual(rebuilt, field, field.name)
            XCTAssertEqual(field.isReadOnly, field.kind == .exitInformation, field.name)
        }
    }

    func testHighAccessExistsExactlyForSixtyFourBitFields() {
        for field in VMCSField.allFields {
            if field.width == .bits64 {
                let high = try! XCTUnwrap(field.high, field.name)
                XCTAssertEqual(high.rawValue, field.rawValue | 1, field.name)
                XCTAssertTrue(high.isHighAccess)
                XCTAssertEqual(high.full, field)
                XCTAssertEqual(high.width, .bits64)
                XCTAssertEqual(high.index, field.index)
                XCTAssertEqual(high.name, field.name + "_HIGH")
                XCTAssertEqual(VMCSField(width: .bits64, kind: field.kind, index: field.index, high: true), high)
            } else {
                XCTAssertNil(field.high, field.name)
            }
        }
    }

    func testCatalogHasNoDuplicatesAndIsSorted() {
        let all = VMCSField.allFields
        XCTAssertEqual(Set(all).count, all.count)
        XCTAssertEqual(Set(all.map(\.name)).count, all.count)
        XCTAssertEqual(all, all.sorted { $0.rawValue < $1.rawValue })
        XCTAssertEqual(all.count, 181)
        XCTAssertFalse(all.contains { $0.name.hasPrefix("field ") })
    }

    func testSpotEncodingsAgainstAppendixB() {
        let expected: [(VMCSField, UInt32, String)] = [
            (.virtualProcessorID, 0x0000, "VIRTUAL_PROCESSOR_ID"),
            (.postedInterruptNotificationVector, 0x0002, "POSTED_INTR_NV"),
            (.eptpIndex, 0x0004, "EPTP_INDEX"),
            (.guestESSelector, 0x0800, "GUEST_ES_SELECTOR"),
            (.guestInterruptStatus, 0x0810, "GUEST_INTR_STATUS"),
            (.guestPMLIndex, 0x0812, "GUEST_PML_INDEX"),
            (.hostESSelector, 0x0c00, "HOST_ES_SELECTOR"),
            (.hostTRSelector, 0x0c0c, "HOST_TR_SELECTOR"),
            (.ioBitmapA, 0x2000, "IO_BITMAP_A"),
            (.msrBitmap, 0x2004, "MSR_BITMAP"),
            (.tscOffset, 0x2010, "TSC_OFFSET"),
            (.eptPointer, 0x201a, "EPT_POINTER"),
            (.vmreadBitmapAddress, 0x2026, "VMREAD_BITMAP"),
            (.tertiaryProcessorBasedControls, 0x2034, "TERTIARY_VM_EXEC_CONTROL"),
            (.guestPhysicalAddress, 0x2400, "GUEST_PHYSICAL_ADDRESS"),
            (.vmcsLinkPointer, 0x2800, "VMCS_LINK_POINTER"),
            (.guestIA32EFER, 0x2806, "GUEST_IA32_EFER"),
            (.guestIA32PKRS, 0x2818, "GUEST_IA32_PKRS"),
            (.hostIA32PAT, 0x2c00, "HOST_IA32_PAT"),
            (.pinBasedControls, 0x4000, "PIN_BASED_VM_EXEC_CONTROL"),
            (.processorBasedControls, 0x4002, "CPU_BASED_VM_EXEC_CONTROL"),
            (.exitControls, 0x400c, "VM_EXIT_CONTROLS"),
            (.entryControls, 0x4012, "VM_ENTRY_CONTROLS"),
            (.secondaryProcessorBasedControls, 0x401e, "SECONDARY_VM_EXEC_CONTROL"),
            (.vmInstructionError, 0x4400, "VM_INSTRUCTION_ERROR"),
            (.exitReason, 0x4402, "VM_EXIT_REASON"),
            (.vmxInstructionInfo, 0x440e, "VMX_INSTRUCTION_INFO"),
            (.guestCSAccessRights, 0x4816, "GUEST_CS_AR_BYTES"),
            (.guestInterruptibilityState, 0x4824, "GUEST_INTERRUPTIBILITY_INFO"),
            (.guestActivityState, 0x4826, "GUEST_ACTIVITY_STATE"),
            (.guestVMXPreemptionTimerValue, 0x482e, "VMX_PREEMPTION_TIMER_VALUE"),
            (.hostIA32SysenterCS, 0x4c00, "HOST_IA32_SYSENTER_CS"),
            (.cr0GuestHostMask, 0x6000, "CR0_GUEST_HOST_MASK"),
            (.exitQualification, 0x6400, "EXIT_QUALIFICATION"),
            (.guestLinearAddress, 0x640a, "GUEST_LINEAR_ADDRESS"),
            (.guestCR0, 0x6800, "GUEST_CR0"),
            (.guestRSP, 0x681c, "GUEST_RSP"),
            (.guestRIP, 0x681e, "GUEST_RIP"),
            (.guestRFLAGS, 0x6820, "GUEST_RFLAGS"),
            (.guestIA32SysenterEIP, 0x6826, "GUEST_SYSENTER_EIP"),
            (.guestSSP, 0x682a, "GUEST_SSP"),
            (.hostCR3, 0x6c02, "HOST_CR3"),
            (.hostRSP, 0x6c14, "HOST_RSP"),
            (.hostRIP, 0x6c16, "HOST_RIP"),
        ]
        for (field, raw, name) in expected {
            XCTAssertEqual(field.rawValue, raw, name)
            XCTAssertEqual(field.name, name)
            XCTAssertEqual(field.description, name)
            XCTAssertTrue(VMCSField.allFields.contains(field), name)
        }
    }

    func testWidthsAndKindsOfKnownFields() {
        XCTAssertEqual(VMCSField.guestRIP.width, .natural)
        XCTAssertEqual(VMCSField.guestRIP.kind, .guestState)
        XCTAssertEqual(VMCSField.exitReason.width, .bits32)
        XCTAssertEqual(VMCSField.exitReason.kind, .exitInformation)
        XCTAssertTrue(VMCSField.exitReason.isReadOnly)
        XCTAssertTrue(VMCSField.guestPhysicalAddress.isReadOnly)
        XCTAssertFalse(VMCSField.guestRIP.isReadOnly)
        XCTAssertEqual(VMCSField.eptPointer.width, .bits64)
        XCTAssertEqual(VMCSField.eptPointer.kind, .control)
        XCTAssertEqual(VMCSField.hostESSelector.width, .bits16)
        XCTAssertEqual(VMCSField.hostESSelector.kind, .hostState)
        XCTAssertEqual(VMCSField.Width.bits16.byteCount, 2)
        XCTAssertEqual(VMCSField.Width.bits32.byteCount, 4)
        XCTAssertEqual(VMCSField.Width.bits64.byteCount, 8)
        XCTAssertEqual(VMCSField.Width.natural.byteCount, 8)
    }

    func testUnknownAndMalformedEncodings() {
        let unknown = VMCSField(rawValue: 0x2046)
        XCTAssertFalse(unknown.isKnown)
        XCTAssertEqual(unknown.name, "field 0x2046")
        XCTAssertEqual(VMCSField(rawValue: 0x12).name, "field 0x0012")
        // Bit 12 and bits 31:15 are reserved.
        XCTAssertTrue(VMCSField(rawValue: 0x1000).hasReservedBitsSet)
        XCTAssertTrue(VMCSField(rawValue: 0x8000).hasReservedBitsSet)
        XCTAssertTrue(VMCSField(rawValue: 0x8000_681e).hasReservedBitsSet)
        XCTAssertEqual(VMCSField(rawValue: 0x8000_681e).name, "field 0x8000681e")
        // Access bit on a natural-width field names nothing.
        let oddNatural = VMCSField(rawValue: 0x681f)
        XCTAssertTrue(oddNatural.isHighAccess)
        XCTAssertNil(oddNatural.high)
        XCTAssertFalse(oddNatural.isKnown)
        XCTAssertEqual(oddNatural.full, .guestRIP)
        // Index is 9 bits.
        XCTAssertEqual(VMCSField(width: .bits32, kind: .control, index: 0x3ff).index, 0x1ff)
    }

    func testHighestIndexIsTheLargestCatalogIndex() {
        XCTAssertEqual(VMCSField.highestIndex, VMCSField.allFields.map(\.index).max())
        // IA32_SPEC_CTRL shadow (0x204c) has index 0x26, the largest defined.
        XCTAssertEqual(VMCSField.highestIndex, 0x26)
        XCTAssertTrue(VMCSField.allFields.allSatisfy { $0.index <= VMCSField.highestIndex })
    }

    // MARK: Exit reasons (Appendix C, 25.9.1)

    func testExitReasonNumbersAndNames() {
        XCTAssertEqual(VMXExitReason.exceptionOrNMI.rawValue, 0)
        XCTAssertEqual(VMXExitReason.tripleFault.rawValue, 2)
        XCTAssertEqual(VMXExitReason.cpuid.rawValue, 10)
        XCTAssertEqual(VMXExitReason.hlt.rawValue, 12)
        XCTAssertEqual(VMXExitReason.vmcall.rawValue, 18)
        XCTAssertEqual(VMXExitReason.vmread.rawValue, 23)
        XCTAssertEqual(VMXExitReason.vmxon.rawValue, 27)
        XCTAssertEqual(VMXExitReason.ioInstruction.rawValue, 30)
        XCTAssertEqual(VMXExitReason.entryFailureInvalidGuestState.rawValue, 33)
        XCTAssertEqual(VMXExitReason.eptViolation.rawValue, 48)
        XCTAssertEqual(VMXExitReason.eptMisconfiguration.rawValue, 49)
        XCTAssertEqual(VMXExitReason.preemptionTimerExpired.rawValue, 52)
        XCTAssertEqual(VMXExitReason.xrstors.rawValue, 64)
        XCTAssertEqual(VMXExitReason.tpause.rawValue, 68)
        XCTAssertEqual(VMXExitReason.busLock.rawValue, 74)
        XCTAssertEqual(VMXExitReason.wrmsrlist.rawValue, 79)

        XCTAssertEqual(VMXExitReason.eptViolation.name, "EPT_VIOLATION")
        XCTAssertEqual(VMXExitReason.vmread.name, "VMREAD")
        XCTAssertEqual(VMXExitReason.cpuid.description, "CPUID")
        XCTAssertEqual(VMXExitReason.tripleFault.name, "TRIPLE_FAULT")
        XCTAssertEqual(VMXExitReason(rawValue: 35).name, "VMX_REASON_35")
        XCTAssertFalse(VMXExitReason(rawValue: 35).isKnown)
        XCTAssertNil(VMXExitReason(rawValue: 35).knownName)
        // Appendix C, Table C-1: 65 PCONFIG, 78 RDMSRLIST, 79 WRMSRLIST.
        XCTAssertEqual(VMXExitReason(rawValue: 65).knownName, "PCONFIG")
        XCTAssertEqual(VMXExitReason(rawValue: 78).knownName, "RDMSRLIST")
        XCTAssertEqual(VMXExitReason(rawValue: 79).knownName, "WRMSRLIST")
        XCTAssertEqual(VMXExitReason.name(code: 48), "EPT_VIOLATION")
        XCTAssertEqual(VMXExitReason.name(code: 0x1_0030), "VMX_REASON_65584", "no truncation to 16 bits")
    }

    func testExitReasonCatalogIsConsistent() {
        let all = VMXExitReason.allKnown
        XCTAssertEqual(Set(all).count, all.count)
        XCTAssertEqual(Set(all.map(\.name)).count, all.count)
        XCTAssertEqual(all, all.sorted { $0.rawValue < $1.rawValue })
        // Appendix C leaves 35, 38, 42 and 71 unused.
        for gap: UInt16 in [35, 38, 42, 71] {
            XCTAssertFalse(all.contains(VMXExitReason(rawValue: gap)), "\(gap)")
        }
        XCTAssertEqual(all.count, 76)
    }

    func testExitReasonField() {
        let failure = ExitReasonField.make(basic: .entryFailureInvalidGuestState, entryFailure: true)
        XCTAssertEqual(failure.rawValue, 0x8000_0021)
        XCTAssertTrue(failure.isEntryFailure)
        XCTAssertEqual(failure.basic, .entryFailureInvalidGuestState)

        var plain = ExitReasonField.make(basic: .vmcall)
        XCTAssertEqual(plain.rawValue, 18)
        XCTAssertFalse(plain.isEntryFailure)
        plain.isEnclaveMode = true
        plain.isPendingMTF = true
        plain.isFromVMXRoot = true
        XCTAssertEqual(plain.rawValue, 18 | 1 << 27 | 1 << 28 | 1 << 29)
        plain.basic = .hlt
        XCTAssertEqual(plain.rawValue, 12 | 1 << 27 | 1 << 28 | 1 << 29)
        plain.isPendingMTF = false
        XCTAssertEqual(plain.rawValue, 12 | 1 << 27 | 1 << 29)
    }

    // MARK: VM-instruction errors (31.4)

    func testVMInstructionErrorNumbers() {
        XCTAssertEqual(VMInstructionError.vmcallInVMXRoot.rawValue, 1)
        XCTAssertEqual(VMInstructionError.vmclearInvalidAddress.rawValue, 2)
        XCTAssertEqual(VMInstructionError.vmclearWithVMXONPointer.rawValue, 3)
        XCTAssertEqual(VMInstructionError.vmlaunchNonClearVMCS.rawValue, 4)
        XCTAssertEqual(VMInstructionError.vmresumeNonLaunchedVMCS.rawValue, 5)
        XCTAssertEqual(VMInstructionError.vmresumeAfterVMXOFF.rawValue, 6)
        XCTAssertEqual(VMInstructionError.entryInvalidControlFields.rawValue, 7)
        XCTAssertEqual(VMInstructionError.entryInvalidHostStateFields.rawValue, 8)
        XCTAssertEqual(VMInstructionError.vmptrldInvalidAddress.rawValue, 9)
        XCTAssertEqual(VMInstructionError.vmptrldWithVMXONPointer.rawValue, 10)
        XCTAssertEqual(VMInstructionError.vmptrldIncorrectRevisionID.rawValue, 11)
        XCTAssertEqual(VMInstructionError.unsupportedVMCSComponent.rawValue, 12)
        XCTAssertEqual(VMInstructionError.vmwriteToReadOnlyComponent.rawValue, 13)
        XCTAssertEqual(VMInstructionError.vmxonInVMXRoot.rawValue, 15)
        XCTAssertEqual(VMInstructionError.entryEventsBlockedByMovSS.rawValue, 26)
        XCTAssertEqual(VMInstructionError.invalidINVEPTINVVPIDOperand.rawValue, 28)
        let numbers = VMInstructionError.allCases.map(\.rawValue)
        XCTAssertEqual(numbers, (1...28).filter { ![14, 21, 27].contains($0) })
        XCTAssertNil(VMInstructionError(rawValue: 14))
        XCTAssertEqual(VMInstructionError.vmwriteToReadOnlyComponent.description, "VMWRITE to read-only VMCS component")
        XCTAssertTrue(VMInstructionError.allCases.allSatisfy { !$0.description.isEmpty })
    }

    // MARK: Capability MSRs (Appendix A)

    func testMSRIndices() {
        XCTAssertEqual(VMXMSR.featureControl, 0x3a)
        XCTAssertEqual(VMXMSR.basic, 0x480)
        XCTAssertEqual(VMXMSR.pinbasedCtls, 0x481)
        XCTAssertEqual(VMXMSR.procbasedCtls, 0x482)
        XCTAssertEqual(VMXMSR.exitCtls, 0x483)
        XCTAssertEqual(VMXMSR.entryCtls, 0x484)
        XCTAssertEqual(VMXMSR.misc, 0x485)
        XCTAssertEqual(VMXMSR.cr0Fixed0, 0x486)
        XCTAssertEqual(VMXMSR.cr4Fixed1, 0x489)
        XCTAssertEqual(VMXMSR.vmcsEnum, 0x48a)
        XCTAssertEqual(VMXMSR.procbasedCtls2, 0x48b)
        XCTAssertEqual(VMXMSR.eptVPIDCap, 0x48c)
        XCTAssertEqual(VMXMSR.truePinbasedCtls, 0x48d)
        XCTAssertEqual(VMXMSR.trueEntryCtls, 0x490)
        XCTAssertEqual(VMXMSR.vmfunc, 0x491)
        XCTAssertEqual(VMXMSR.procbasedCtls3, 0x492)
        XCTAssertEqual(VMXMSR.exitCtls2, 0x493)
        XCTAssertEqual(VMXMSR.capabilityRange, 0x480...0x491)
    }

    func testFeatureControlBits() {
        XCTAssertEqual(FeatureControl.lock.rawValue, 1)
        XCTAssertEqual(FeatureControl.vmxInsideSMX.rawValue, 2)
        XCTAssertEqual(FeatureControl.vmxOutsideSMX.rawValue, 4)
        XCTAssertEqual(FeatureControl.senterLocalFunctions.rawValue, 0x7f00)
        XCTAssertEqual(FeatureControl.senterGlobalEnable.rawValue, 0x8000)
        XCTAssertEqual(FeatureControl.lmceOn.rawValue, 1 << 20)
        XCTAssertEqual(([.lock, .vmxOutsideSMX] as FeatureControl).rawValue, 5)
    }

    func testAllowedSettings() {
        // Must-be-1 = default-1 pin bits 1, 2, 4; may-be-1 adds 0, 3, 6.
        let pin = AllowedSettings(rawValue: 0x0000_005f_0000_0016)
        XCTAssertEqual(pin.allowed0, 0x16)
        XCTAssertEqual(pin.allowed1, 0x5f)
        XCTAssertEqual(pin.rawValue, 0x0000_005f_0000_0016)
        XCTAssertEqual(AllowedSettings(allowed0: 0x16, allowed1: 0x5f), pin)
        XCTAssertTrue(pin.permits(0x16))
        XCTAssertTrue(pin.permits(0x16 | 1 << 0 | 1 << 3 | 1 << 6))
        XCTAssertFalse(pin.permits(0x14), "bit 1 must be 1")
        XCTAssertFalse(pin.permits(0x16 | 1 << 5), "virtual NMIs not allowed")
        XCTAssertFalse(pin.permits(0))
        XCTAssertEqual(pin.adjusted(0), 0x16)
        XCTAssertEqual(pin.adjusted(0xffff_ffff), 0x5f)
        let anything = AllowedSettings(allowed0: 0, allowed1: ~0)
        XCTAssertTrue(anything.permits(0) && anything.permits(0xdead_beef))
    }

    func testVMXBasicRoundTrip() {
        let basic = VMXBasic(revisionID: 0x5452_5031, regionSize: 4096, physicalAddressWidth32: false,
                             dualMonitor: true, memoryType: 6, insOutsReporting: true, trueControls: true,
                             deliverErrorCodeAnyException: true)
        let raw = basic.rawValue
        let expected: UInt64 = 0x5452_5031 | 4096 << 32 | 1 << 49 | 6 << 50 | 1 << 54 | 1 << 55 | 1 << 56
        XCTAssertEqual(raw, expected)
        XCTAssertEqual(raw, 0x01da_1000_5452_5031)
        XCTAssertEqual(VMXBasic(rawValue: raw), basic)

        let other = VMXBasic(rawValue: 0x7fff_ffff | 0x1fff << 32 | 1 << 48 | 0xf << 50)
        XCTAssertEqual(other.revisionID, 0x7fff_ffff)
        XCTAssertEqual(other.regionSize, 0x1fff)
        XCTAssertTrue(other.physicalAddressWidth32)
        XCTAssertFalse(other.dualMonitor)
        XCTAssertEqual(other.memoryType, 0xf)
        XCTAssertFalse(other.trueControls)
        XCTAssertEqual(VMXBasic(rawValue: other.rawValue), other)
        // Bit 31 of the revision dword and reserved bits do not survive.
        XCTAssertEqual(VMXBasic(rawValue: 0x8000_0001 | 1 << 63).rawValue, 1)
    }

    func testVMXMiscRoundTrip() {
        let misc = VMXMisc(preemptionTimerTSCShift: 5, storesLMAOnExit: true, activityHLT: true,
                           activityShutdown: false, activityWaitForSIPI: true, intelPTInVMX: true,
                           rdmsrSMBASEInSMM: false, cr3TargetCount: 4, maxMSRListSizeCode: 1,
                           smmMonitorCtlBit2: true, vmwriteAnyField: true, injectZeroLengthInstruction: true,
                           msegRevisionID: 0xabcd)
        let raw = misc.rawValue
        let low: UInt64 = 5 | 1 << 5 | 1 << 6 | 1 << 8 | 1 << 14 | 4 << 16
        let high: UInt64 = 1 << 25 | 1 << 28 | 1 << 29 | 1 << 30 | 0xabcd << 32
        XCTAssertEqual(raw, low | high)
        XCTAssertEqual(VMXMisc(rawValue: raw), misc)
        XCTAssertEqual(misc.maxMSRListEntries, 1024)
        XCTAssertEqual(VMXMisc().maxMSRListEntries, 512)
        let full = VMXMisc(rawValue: ~0)
        XCTAssertEqual(full.preemptionTimerTSCShift, 31)
        XCTAssertEqual(full.cr3TargetCount, 0x1ff)
        XCTAssertEqual(full.maxMSRListSizeCode, 7)
        XCTAssertEqual(full.msegRevisionID, 0xffff_ffff)
        let reserved: UInt64 = 0x1f << 9 | 1 << 31
        XCTAssertEqual(full.rawValue, ~reserved)
    }

    func testEPTVPIDCapabilityBits() {
        XCTAssertEqual(EPTVPIDCapabilities.executeOnly.rawValue, 1)
        XCTAssertEqual(EPTVPIDCapabilities.pageWalkLength4.rawValue, 1 << 6)
        XCTAssertEqual(EPTVPIDCapabilities.memoryTypeWB.rawValue, 1 << 14)
        XCTAssertEqual(EPTVPIDCapabilities.invept.rawValue, 1 << 20)
        XCTAssertEqual(EPTVPIDCapabilities.inveptSingleContext.rawValue, 1 << 25)
        XCTAssertEqual(EPTVPIDCapabilities.inveptAllContext.rawValue, 1 << 26)
        XCTAssertEqual(EPTVPIDCapabilities.invvpid.rawValue, 1 << 32)
        XCTAssertEqual(EPTVPIDCapabilities.invvpidSingleContextRetainGlobals.rawValue, 1 << 43)
    }

    func testEPTPointerRoundTrip() {
        let eptp = EPTPointer(rootAddress: 0x1234_5000, memoryType: 6, pageWalkLevels: 4, accessedDirty: true)
        XCTAssertEqual(eptp.rawValue, 0x1234_505e)
        XCTAssertEqual(eptp.memoryType, 6)
        XCTAssertEqual(eptp.pageWalkLevels, 4)
        XCTAssertTrue(eptp.accessedDirtyEnabled)
        XCTAssertFalse(eptp.supervisorShadowStackEnabled)
        XCTAssertEqual(eptp.pml4Address, 0x1234_5000)
        let five = EPTPointer(rawValue: 0x8000 | 4 << 3 | 1 << 7)
        XCTAssertEqual(five.pageWalkLevels, 5)
        XCTAssertEqual(five.memoryType, 0)
        XCTAssertTrue(five.supervisorShadowStackEnabled)
        XCTAssertEqual(EPTPointer(rootAddress: five.rootAddress, memoryType: 0, pageWalkLevels: 5,
                                  supervisorShadowStack: true), five)
        let reservedAbove46: UInt64 = ~0 << 46
        XCTAssertEqual(EPTPointer.reservedBits(physicalAddressWidth: 46), 0xf00 | reservedAbove46)
    }

    // MARK: Controls (25.6-25.8) and default-1 classes (A.2)

    func testDefaultOneSettings() {
        XCTAssertEqual(DefaultSettings.pinBased, 0x16)
        XCTAssertEqual(DefaultSettings.processorBased, 0x0401_e172)
        XCTAssertEqual(DefaultSettings.exit, 0x0003_6dff)
        XCTAssertEqual(DefaultSettings.entry, 0x0000_11ff)
        // Pin-based default-1 bits are all undefined controls; the others hold
        // CR3-load/store exiting and save/load debug controls (A.2).
        let pinDefined: PinBasedControls = [.externalInterruptExiting, .nmiExiting, .virtualNMIs,
                                            .activatePreemptionTimer, .processPostedInterrupts]
        XCTAssertEqual(pinDefined.rawValue & DefaultSettings.pinBased, 0)
        let procDefault1 = ProcessorBasedControls(rawValue: DefaultSettings.processorBased)
        XCTAssertTrue(procDefault1.contains(.cr3LoadExiting))
        XCTAssertTrue(procDefault1.contains(.cr3StoreExiting))
        XCTAssertTrue(VMExitControls(rawValue: DefaultSettings.exit).contains(.saveDebugControls))
        XCTAssertTrue(VMEntryControls(rawValue: DefaultSettings.entry).contains(.loadDebugControls))
    }

    func testControlBitPositions() {
        XCTAssertEqual(PinBasedControls.nmiExiting.rawValue, 1 << 3)
        XCTAssertEqual(PinBasedControls.processPostedInterrupts.rawValue, 1 << 7)
        XCTAssertEqual(ProcessorBasedControls.hltExiting.rawValue, 1 << 7)
        XCTAssertEqual(ProcessorBasedControls.useMSRBitmaps.rawValue, 1 << 28)
        XCTAssertEqual(ProcessorBasedControls.activateSecondaryControls.rawValue, 1 << 31)
        XCTAssertEqual(SecondaryProcessorBasedControls.enableEPT.rawValue, 1 << 1)
        XCTAssertEqual(SecondaryProcessorBasedControls.enableVPID.rawValue, 1 << 5)
        XCTAssertEqual(SecondaryProcessorBasedControls.unrestrictedGuest.rawValue, 1 << 7)
        XCTAssertEqual(SecondaryProcessorBasedControls.vmcsShadowing.rawValue, 1 << 14)
        XCTAssertEqual(SecondaryProcessorBasedControls.enableENCLVExiting.rawValue, 1 << 28)
        XCTAssertEqual(VMExitControls.hostAddressSpaceSize.rawValue, 0x200)
        XCTAssertEqual(VMExitControls.acknowledgeInterruptOnExit.rawValue, 0x8000)
        XCTAssertEqual(VMExitControls.clearRTITCTL.rawValue, 0x0200_0000)
        XCTAssertEqual(VMEntryControls.ia32eModeGuest.rawValue, 0x200)
        XCTAssertEqual(VMEntryControls.loadEFER.rawValue, 0x8000)
        XCTAssertEqual(VMEntryControls.loadRTITCTL.rawValue, 0x0004_0000)
    }
}
