@testable import NestedVMX
import VMXArch
import XCTest

/// Hyper-V's enlightened VMCS v1 (TLFS "Nested Virtualization", data type
/// HV_VMX_ENLIGHTENED_VMCS): the field map against the specification's
/// offsets, its structure, the clean-field rules at entry, the write-back at
/// exit, the VP assist page MSR and the CPUID leaves, and enlightened
/// VMLAUNCH/VMRESUME through the instruction semantics.
final class EnlightenedVMCSTests: XCTestCase {
    typealias E = EnlightenedVMCS
    typealias G = EnlightenedVMCS.CleanFields
    typealias L = TestLayout

    // MARK: The field map

    /// Offsets, widths and clean-field groups from the specification's
    /// structure, a sample from every group, the groupless fields and the
    /// exit information (TLFS HV_VMX_ENLIGHTENED_VMCS and its
    /// HV_VMX_ENLIGHTENED_CLEAN_FIELD_* bits).
    static let specification: [(VMCSField, Int, Int, G)] = [
        (.hostESSelector, 8, 2, .hostGroup1), (.hostTRSelector, 20, 2, .hostGroup1),
        (.hostIA32PAT, 24, 8, .hostGroup1), (.hostIA32EFER, 32, 8, .hostGroup1), (.hostCR0, 40, 8, .hostGroup1),
        (.hostCR4, 56, 8, .hostGroup1), (.hostRIP, 80, 8, .hostGroup1), (.hostIA32SysenterCS, 88, 4, .hostGroup1),
        (.pinBasedControls, 92, 4, .controlGroup1), (.exitControls, 96, 4, .controlGroup1),
        (.secondaryProcessorBasedControls, 100, 4, .controlGroup1),
        (.ioBitmapA, 104, 8, .ioBitmap), (.ioBitmapB, 112, 8, .ioBitmap), (.msrBitmap, 120, 8, .msrBitmap),
        (.guestESSelector, 128, 2, .guestGroup2), (.guestTRSelector, 142, 2, .guestGroup2),
        (.guestESLimit, 144, 4, .guestGroup2), (.guestIDTRLimit, 180, 4, .guestGroup2),
        (.guestESAccessRights, 184, 4, .guestGroup2), (.guestTRAccessRights, 212, 4, .guestGroup2),
        (.guestESBase, 216, 8, .guestGroup2), (.guestIDTRBase, 288, 8, .guestGroup2),
        (.exitMSRStoreAddress, 320, 8, .all), (.entryMSRLoadAddress, 336, 8, .all),
        (.cr3TargetValue0, 344, 8, .all), (.cr3TargetValue3, 368, 8, .all),
        (.pageFaultErrorCodeMask, 376, 4, .all), (.cr3TargetCount, 384, 4, .all), (.entryMSRLoadCount, 396, 4, .all),
        (.tscOffset, 400, 8, .controlGroup2), (.virtualAPICAddress, 408, 8, .controlGroup2),
        (.vmcsLinkPointer, 416, 8, .guestGroup1), (.guestIA32Debugctl, 424, 8, .guestGroup1),
        (.guestIA32EFER, 440, 8, .guestGroup1), (.guestPDPTE0, 448, 8, .guestGroup1), (.guestPDPTE3, 472, 8, .guestGroup1),
        (.guestPendingDebugExceptions, 480, 8, .guestGroup1), (.guestActivityState, 504, 4, .guestGroup1),
        (.guestIA32SysenterCS, 508, 4, .guestGroup1),
        (.cr0GuestHostMask, 512, 8, .controlAndDebugRegisters), (.cr4ReadShadow, 536, 8, .controlAndDebugRegisters),
        (.guestCR0, 544, 8, .controlAndDebugRegisters), (.guestCR3, 552, 8, .controlAndDebugRegisters),
        (.guestDR7, 568, 8, .controlAndDebugRegisters),
        (.hostFSBase, 576, 8, .hostPointer), (.hostIDTRBase, 608, 8, .hostPointer), (.hostRSP, 616, 8, .hostPointer),
        (.eptPointer, 624, 8, .controlTranslation), (.virtualProcessorID, 632, 2, .controlTranslation),
        (.guestPhysicalAddress, 680, 8, []), (.vmInstructionError, 688, 4, []), (.exitReason, 692, 4, []),
        (.exitInterruptionInfo, 696, 4, []), (.idtVectoringInfo, 704, 4, []), (.exitInstructionLength, 712, 4, []),
        (.vmxInstructionInfo, 716, 4, []), (.exitQualification, 720, 8, []), (.ioRIP, 752, 8, []),
        (.guestLinearAddress, 760, 8, []),
        (.guestRSP, 768, 8, .guestBasic), (.guestRFLAGS, 776, 8, .guestBasic), (.guestInterruptibilityState, 784, 4, .guestBasic),
        (.processorBasedControls, 788, 4, .controlProcessor), (.exceptionBitmap, 792, 4, .controlException),
        (.entryControls, 796, 4, .controlEntry), (.entryInterruptionInfo, 800, 4, .controlEvent),
        (.entryInstructionLength, 808, 4, .controlEvent), (.tprThreshold, 812, 4, []), (.guestRIP, 816, 8, []),
        (.guestIA32BNDCFGS, 896, 8, .guestGroup1), (.guestIA32PerfGlobalCtrl, 904, 8, .guestGroup1),
        (.xssExitingBitmap, 960, 8, .controlGroup2), (.hostIA32PerfGlobalCtrl, 976, 8, .hostGroup1),
        (.tscMultiplier, 984, 8, .controlGroup2),
    ]

    func testFieldMapMatchesTheSpecificationsOffsets() throws {
        for (field, offset, width, group) in Self.specification {
            let slot = try XCTUnwrap(E.slot(for: field), "\(field) is in the eVMCS")
            XCTAssertEqual(slot.offset, offset, "\(field)")
            XCTAssertEqual(slot.width, width, "\(field)")
            XCTAssertEqual(slot.group, group, "\(field)")
        }
        // Every one of the 16 groups is in the sample but the enlightenments
        // control, which holds only synthetic fields.
        let sampled = Self.specification.reduce(G()) { $1.3 == .all ? $0 : $0.union($1.3) }
        XCTAssertEqual(sampled, G.all.subtracting(.enlightenmentsControl))
        XCTAssertEqual(E.cleanFieldsOffset, 824)
        XCTAssertEqual(E.abortOffset, 4)
        XCTAssertEqual(E.layout.count, 141)
    }

    func testFieldMapIsWellFormed() {
        let layout = E.layout
        XCTAssertEqual(Set(layout.map(\.field)).count, layout.count, "no field twice")
        // Offsets rise and no two fields overlap, nor the version, abort
        // indicator, or the synthetic fields and their padding (824..<896).
        var end = 8
        for slot in layout {
            XCTAssertGreaterThanOrEqual(slot.offset, end, "\(slot.field) overlaps the field before it")
            end = slot.offset + slot.width
            XCTAssertLessThanOrEqual(end, E.size, "\(slot.field) inside the structure")
            XCTAssertLessThanOrEqual(end, E.pageSize, "\(slot.field) inside the page")
            XCTAssertFalse(slot.offset < 896 && end > 824, "\(slot.field) overlaps the synthetic fields")
            XCTAssertEqual(slot.width, slot.field.width.byteCount, "\(slot.field): the encoding's width")
            XCTAssertEqual(slot.offset % slot.width, 0, "\(slot.field) naturally aligned")
            XCTAssertTrue(slot.field.isKnown && !slot.field.isHighAccess, "\(slot.field) is an Appendix B full encoding")
            XCTAssertTrue(slot.group.isEmpty || slot.group == .all || slot.group.rawValue.nonzeroBitCount == 1,
                          "\(slot.field): one group, none or all")
            if slot.field.kind == .exitInformation { XCTAssertEqual(slot.group, [], "\(slot.field): L1 never writes it") }
            XCTAssertEqual(E.slot(for: slot.field), slot)
        }
        XCTAssertNil(E.slot(for: .guestVMXPreemptionTimerValue), "eVMCS v1 has no preemption-timer value")
        XCTAssertNil(E.slot(for: VMCSField(VMCSField.guestRIP.rawValue | 1)), "no high access of a natural-width field")
    }

    // MARK: Clean fields at entry

    /// A page with a value in every field: offset-derived, cut to its width.
    func filledPage(at address: UInt64, memory: ArrayMemory, salt: UInt64 = 0) {
        for slot in E.layout { _ = E.write(slot, 0x1111_0000_0000 &+ UInt64(slot.offset) &+ salt, at: address, memory: memory) }
        _ = memory.store(E.version, at: address)
    }

    func value(_ slot: E.Slot, salt: UInt64 = 0) -> UInt64 {
        (0x1111_0000_0000 &+ UInt64(slot.offset) &+ salt) & slot.field.width.valueMask
    }

    func testAFullLoadReadsEveryFieldButTheExitInformation() {
        let memory = ArrayMemory(size: 0x10000), page: UInt64 = 0x3000
        filledPage(at: page, memory: memory)
        _ = memory.store(G.all.rawValue, at: page + E.cleanFieldsOffset)    // ignored by a full load
        var vmcs = VMCS12(enlightenedAt: page)
        XCTAssertTrue(E.load(from: page, into: &vmcs, full: true, memory: memory))
        for slot in E.layout {
            XCTAssertEqual(vmcs.read(slot.field), slot.field.kind == .exitInformation ? 0 : value(slot), "\(slot.field)")
        }
    }

    /// TLFS "Clean Fields": L0 may use its cached copy of a group whose
    /// clean bit is set, so a field written with its bit still set is not
    /// picked up; clearing the bit makes the whole group reload.
    func testOnlyGroupsWithTheirCleanBitClearAreReloaded() {
        let memory = ArrayMemory(size: 0x10000), page: UInt64 = 0x3000
        filledPage(at: page, memory: memory)
        var vmcs = VMCS12(enlightenedAt: page)
        E.load(from: page, into: &vmcs, full: true, memory: memory)
        let before = vmcs
        filledPage(at: page, memory: memory, salt: 7)                          // L1 rewrites every field ...
        _ = memory.store(G.all.rawValue, at: page + E.cleanFieldsOffset)       // ... and leaves every bit set
        E.load(from: page, into: &vmcs, full: false, memory: memory)
        for slot in E.layout where slot.field.kind != .exitInformation {
            let expected = slot.group.isEmpty ? value(slot, salt: 7) : before.read(slot.field)
            XCTAssertEqual(vmcs.read(slot.field), expected, "\(slot.field): only groupless fields are read")
        }
        // Clear CRDR and the host pointers: exactly their fields come in.
        _ = memory.store(G.all.subtracting([.controlAndDebugRegisters, .hostPointer]).rawValue, at: page + E.cleanFieldsOffset)
        E.load(from: page, into: &vmcs, full: false, memory: memory)
        XCTAssertEqual(vmcs.read(.guestCR3), value(E.slot(for: .guestCR3)!, salt: 7))
        XCTAssertEqual(vmcs.read(.hostRSP), value(E.slot(for: .hostRSP)!, salt: 7))
        XCTAssertEqual(vmcs.read(.hostRIP), before.read(.hostRIP), "HOST_GRP1 still clean")
        XCTAssertEqual(vmcs.read(.guestRSP), before.read(.guestRSP), "GUEST_BASIC still clean")
        // The fields of every group (the CR3-target and MSR-list counts)
        // come in once any bit is clear.
        XCTAssertEqual(vmcs.read(.cr3TargetCount), value(E.slot(for: .cr3TargetCount)!, salt: 7))
        XCTAssertEqual(vmcs.read(.entryMSRLoadCount), value(E.slot(for: .entryMSRLoadCount)!, salt: 7))
    }

    func testSlotDirtiness() {
        let rip = E.slot(for: .guestRIP)!, rsp = E.slot(for: .guestRSP)!, count = E.slot(for: .exitMSRLoadCount)!
        XCTAssertTrue(rip.isDirty(.all), "no bit covers GUEST_RIP")
        XCTAssertFalse(rsp.isDirty(.all))
        XCTAssertTrue(rsp.isDirty(G.all.subtracting(.guestBasic)))
        XCTAssertFalse(rsp.isDirty(G.all.subtracting(.guestGroup1)))
        XCTAssertFalse(count.isDirty(.all))
        XCTAssertTrue(count.isDirty(G.all.subtracting(.ioBitmap)))
    }

    // MARK: Write-back at exit

    func testAnExitWritesExitInformationAndGuestStateAndNothingElse() {
        let memory = ArrayMemory(size: 0x10000), page: UInt64 = 0x3000
        filledPage(at: page, memory: memory)
        let clean = G.all.subtracting(.hostGroup1).rawValue
        _ = memory.store(clean, at: page + E.cleanFieldsOffset)
        var vmcs = VMCS12(enlightenedAt: page)
        for slot in E.layout { vmcs.write(slot.field, 0xabcd_0000 &+ UInt64(slot.offset)) }
        XCTAssertTrue(E.writeBack(vmcs, to: page, memory: memory))
        for slot in E.layout {
            let written = slot.field.kind == .exitInformation || slot.field.kind == .guestState
                || slot.field == .entryControls || slot.field == .entryInterruptionInfo
            let expected = written ? (0xabcd_0000 &+ UInt64(slot.offset)) & slot.field.width.valueMask : value(slot)
            XCTAssertEqual(E.read(slot, at: page, memory: memory), expected, "\(slot.field)")
        }
        XCTAssertEqual(memory.load(UInt32.self, at: page + E.cleanFieldsOffset), clean, "clean fields are L1's")
        XCTAssertEqual(memory.load(UInt32.self, at: page), E.version)
        XCTAssertFalse(E.writeBack(vmcs, to: 0xff00, memory: memory), "a page partly outside RAM")
    }

    /// The write-back copies the part of the page that holds the exit's
    /// fields and stores it whole: the page must end up byte for byte as
    /// a store of each field would leave it, gaps and all, and a page
    /// that runs out of RAM gets the fields that fit.
    func testTheWriteBackLeavesThePageAsStoresOfEachFieldWould() {
        for page: UInt64 in [0x3000, 0xfe00] {
            let fast = ArrayMemory(size: 0x10000), reference = ArrayMemory(size: 0x10000)
            for i in 0..<0x10000 { fast.bytes[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3); reference.bytes[i] = fast.bytes[i] }
            var vmcs = VMCS12(enlightenedAt: page)
            for (i, field) in VMCSField.allFields.enumerated() { vmcs.write(field, 0x0123_4567_89ab_cdef &* UInt64(i + 1)) }
            var ok = true
            for slot in E.layout where slot.isWrittenAtExit {
                ok = E.write(slot, vmcs.read(slot.field) ?? 0, at: page, memory: reference) && ok
            }
            XCTAssertEqual(E.writeBack(vmcs, to: page, memory: fast), ok, "page \(page)")
            XCTAssertEqual(fast.bytes, reference.bytes, "page \(page)")
        }
    }

    /// With every group clean only the fields no bit covers are read, from
    /// a list made once: the same fields a scan of the layout finds.
    func testTheAllCleanListIsTheGrouplessFields() {
        XCTAssertEqual(E.readWhenAllClean.map(\.field), E.layout.filter { $0.field.kind != .exitInformation && $0.group.isEmpty }.map(\.field))
        XCTAssertFalse(E.readWhenAllClean.isEmpty)
    }

    // MARK: VP assist page and CPUID

    func testVPAssistPageMSR() {
        let memory = ArrayMemory(size: 0x10000)
        var off = HyperVState()
        XCTAssertNil(off.readMSR(HyperV.vpAssistPageMSR), "#GP when Hyper-V is not offered")
        XCTAssertFalse(off.writeMSR(HyperV.vpAssistPageMSR, 0x2001, physicalAddressBits: 46, memory: memory))
        var hv = HyperVState(offered: true)
        XCTAssertEqual(hv.readMSR(HyperV.vpAssistPageMSR), 0)
        XCTAssertNil(hv.readMSR(0x4000_0000), "the guest OS ID MSR is not offered")
        XCTAssertFalse(hv.writeMSR(0x4000_0001, 1, physicalAddressBits: 46, memory: memory), "nor the hypercall MSR")
        XCTAssertFalse(hv.writeMSR(HyperV.vpAssistPageMSR, 0x10001, physicalAddressBits: 46, memory: memory), "not RAM")
        XCTAssertFalse(hv.writeMSR(HyperV.vpAssistPageMSR, 1 << 46 | 1, physicalAddressBits: 46, memory: memory), "MAXPHYADDR")
        XCTAssertNil(hv.vpAssistPage)
        XCTAssertTrue(hv.writeMSR(HyperV.vpAssistPageMSR, 0x2001, physicalAddressBits: 46, memory: memory))
        XCTAssertEqual(hv.readMSR(HyperV.vpAssistPageMSR), 0x2001)
        XCTAssertEqual(hv.vpAssistPage, 0x2000)
        XCTAssertTrue(hv.writeMSR(HyperV.vpAssistPageMSR, 0x10000, physicalAddressBits: 46, memory: memory),
                      "disabling needs no RAM")
        XCTAssertNil(hv.vpAssistPage)
        XCTAssertEqual(hv.readMSR(HyperV.vpAssistPageMSR), 0x10000)
        // Enlightened entry: the byte at 40 and the address at 48.
        XCTAssertTrue(hv.writeMSR(HyperV.vpAssistPageMSR, 0x2001, physicalAddressBits: 46, memory: memory))
        _ = memory.store(UInt64(0x5000), at: 0x2000 + HyperV.VPAssistPage.currentNestedVMCSOffset)
        XCTAssertNil(hv.enlightenedVMCS(memory: memory), "EnlightenVmEntry is 0")
        _ = memory.store(UInt8(1), at: 0x2000 + HyperV.VPAssistPage.enlightenVMEntryOffset)
        XCTAssertEqual(hv.enlightenedVMCS(memory: memory), 0x5000)
        hv.offered = false
        XCTAssertNil(hv.enlightenedVMCS(memory: memory))
    }

    func testCPUIDLeaves() throws {
        let leaves = HyperV.leaves
        XCTAssertEqual(leaves.map(\.function), Array(0x4000_0000...0x4000_000a))
        let vendor = try XCTUnwrap(leaves.first)
        XCTAssertEqual(vendor.eax, 0x4000_000a)
        let bytes = [vendor.ebx, vendor.ecx, vendor.edx].flatMap { r in (0..<4).map { UInt8(truncatingIfNeeded: r >> (8 * $0)) } }
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self), "Microsoft Hv")
        XCTAssertEqual(leaves[1].eax, 0x3123_7648, "Hv#1")
        XCTAssertEqual(leaves[3].eax, 0, "leaf 3 offers no MSR group")
        XCTAssertEqual(leaves[4].eax & (1 << 14), 1 << 14, "use enlightened VMCS")
        XCTAssertEqual(leaves[10].eax & 0xffff, 0x0101, "eVMCS versions 1 to 1")
    }

    // MARK: Enlightened VMLAUNCH and VMRESUME

    static let assistPage: UInt64 = 0x30000
    static let evmcs: UInt64 = 0x31000

    /// In VMX operation, with the VP assist page enabled and naming `evmcs`.
    func enlightenedMachine(evmcs: UInt64 = evmcs) -> VMXMachine {
        var m = VMXMachine()
        m.vmx.hyperV = HyperVState(offered: true)
        m.enterVMX()
        XCTAssertTrue(m.vmx.hyperV.writeMSR(HyperV.vpAssistPageMSR, Self.assistPage | 1, physicalAddressBits: 46, memory: m.memory))
        _ = m.memory.store(UInt8(1), at: Self.assistPage + HyperV.VPAssistPage.enlightenVMEntryOffset)
        _ = m.memory.store(evmcs, at: Self.assistPage + HyperV.VPAssistPage.currentNestedVMCSOffset)
        return m
    }

    /// The entry-check baseline written into the eVMCS page, fields as memory.
    func writeBaseline(_ m: VMXMachine) {
        let baseline = EntryCheckTests.baseline().vmcs
        _ = m.memory.store(E.version, at: Self.evmcs)
        for slot in E.layout { _ = E.write(slot, baseline.read(slot.field) ?? 0, at: Self.evmcs, memory: m.memory) }
    }

    func testBadEnlightenedVMCSAddressesAndVersionsAreVMfailInvalid() {
        for bad: UInt64 in [Self.evmcs + 8, 1 << 46, UInt64(L.ramSize), L.vmxonRegion] {
            var m = enlightenedMachine(evmcs: bad)
            expectRetire(&m, Bytes.vmlaunch, .failInvalid)
            XCTAssertNil(m.vmx.current, "\(bad)")
        }
        var m = enlightenedMachine()
        _ = m.memory.store(UInt32(2), at: Self.evmcs)
        expectRetire(&m, Bytes.vmlaunch, .failInvalid)
        expectRetire(&m, Bytes.vmresume, .failInvalid)
    }

    /// The SDM entry checks run on what the page holds: a zeroed eVMCS
    /// lacks the default-1 controls (VMfailValid 7, its error in the page).
    func testEntryChecksRunOnThePagesContents() {
        var m = enlightenedMachine()
        _ = m.memory.store(E.version, at: Self.evmcs)
        expectRetire(&m, Bytes.vmlaunch, .failValid(7))
        XCTAssertEqual(m.vmx.current?.isEnlightened, true)
        XCTAssertEqual(m.vmx.current?.address, Self.evmcs)
        XCTAssertEqual(m.memory.load(UInt32.self, at: Self.evmcs + 688), 7, "VM_INSTRUCTION_ERROR in the page")
        XCTAssertEqual(m.memory.load(UInt64.self, at: Self.evmcs + 8), 0, "no launch state written into the page")
    }

    func testEnlightenedLaunchAndResumeApplyTheDirtyGroups() throws {
        var m = enlightenedMachine()
        writeBaseline(m)
        XCTAssertEqual(m.run(Bytes.vmlaunch).result, .vmEntry(launch: true))
        let current = try XCTUnwrap(m.vmx.current)
        XCTAssertTrue(current.isEnlightened)
        XCTAssertEqual(current.read(.hostRIP), 0x10_0000)
        XCTAssertEqual(current.read(.eptPointer), EntryCheckTests.baseline().vmcs.read(.eptPointer))
        // An eVMCS has no launch state: VMRESUME needs no VMLAUNCH before it,
        // and a second VMLAUNCH is not VMfailValid 4.
        XCTAssertEqual(m.run(Bytes.vmlaunch).result, .vmEntry(launch: true))

        // L1 sets every clean bit, then changes GUEST_RIP (no group), HOST_RIP
        // without clearing HOST_GRP1, and GUEST_CR3 clearing CRDR.
        _ = m.memory.store(G.all.rawValue, at: Self.evmcs + E.cleanFieldsOffset)
        _ = m.memory.store(UInt64(0x20_0000), at: Self.evmcs + 816)
        _ = m.memory.store(UInt64(0x30_0000), at: Self.evmcs + 80)
        _ = m.memory.store(UInt64(0x6000), at: Self.evmcs + 552)
        _ = m.memory.store(G.all.subtracting(.controlAndDebugRegisters).rawValue, at: Self.evmcs + E.cleanFieldsOffset)
        XCTAssertEqual(m.run(Bytes.vmresume).result, .vmEntry(launch: false))
        let resumed = try XCTUnwrap(m.vmx.current)
        XCTAssertEqual(resumed.read(.guestRIP), 0x20_0000)
        XCTAssertEqual(resumed.read(.guestCR3), 0x6000)
        XCTAssertEqual(resumed.read(.hostRIP), 0x10_0000, "written with HOST_GRP1 clean: not picked up")
        // A VMLAUNCH reads the page whole, clean bits or not.
        XCTAssertEqual(m.run(Bytes.vmlaunch).result, .vmEntry(launch: true))
        XCTAssertEqual(m.vmx.current?.read(.hostRIP), 0x30_0000)
    }

    /// A groupless field made invalid with every clean bit set is still read,
    /// and the entry checks catch it.
    func testEntryChecksSeeTheReloadedFields() {
        var m = enlightenedMachine()
        writeBaseline(m)
        XCTAssertEqual(m.run(Bytes.vmlaunch).result, .vmEntry(launch: true))
        _ = m.memory.store(G.all.subtracting(.controlGroup1).rawValue, at: Self.evmcs + E.cleanFieldsOffset)
        _ = m.memory.store(UInt32(0), at: Self.evmcs + 92)                  // pin-based controls: default-1 bits gone
        expectRetire(&m, Bytes.vmresume, .failValid(7))
        // The preemption timer, allowed by the capability MSRs, has no value
        // field in eVMCS v1: VMfailValid 7 too.
        let pin = EntryCheckTests.baseline().vmcs.read(.pinBasedControls) ?? 0
        _ = m.memory.store(UInt32(pin) | PinBasedControls.activatePreemptionTimer.rawValue, at: Self.evmcs + 92)
        expectRetire(&m, Bytes.vmresume, .failValid(7))
        _ = m.memory.store(UInt32(pin), at: Self.evmcs + 92)
        XCTAssertEqual(m.run(Bytes.vmresume).result, .vmEntry(launch: false))
    }

    /// VMCLEAR of the eVMCS makes it inactive and writes nothing into the
    /// page (offset 8 holds host selectors); an ordinary VMCS that was
    /// current is written back when the eVMCS takes its place.
    func testVMCLEARAndSwitchingBetweenKinds() throws {
        var m = enlightenedMachine()
        writeBaseline(m)
        XCTAssertEqual(m.vmptrld(L.vmcsA), .succeed)
        XCTAssertEqual(m.vmwrite(.guestRIP, 0x1234), .succeed)
        XCTAssertEqual(m.run(Bytes.vmlaunch).result, .vmEntry(launch: true))
        XCTAssertEqual(m.stored(.guestRIP, in: L.vmcsA), 0x1234, "the ordinary VMCS was written back")
        let page = try XCTUnwrap(m.memory.read(Self.evmcs, count: E.pageSize))
        XCTAssertEqual(m.vmclear(Self.evmcs), .succeed)
        XCTAssertNil(m.vmx.current)
        XCTAssertEqual(m.memory.read(Self.evmcs, count: E.pageSize), page)
        // Still named by the VP assist page but not current: nothing written either.
        XCTAssertEqual(m.vmclear(Self.evmcs), .succeed)
        XCTAssertEqual(m.memory.read(Self.evmcs, count: E.pageSize), page)
    }

    /// With enlightened entry off in the VP assist page, VMLAUNCH uses the
    /// ordinary current VMCS as before.
    func testEnlightenVMEntryOffKeepsOrdinaryVMCS() {
        var m = enlightenedMachine()
        _ = m.memory.store(UInt8(0), at: Self.assistPage + HyperV.VPAssistPage.enlightenVMEntryOffset)
        expectRetire(&m, Bytes.vmlaunch, .failInvalid)
        XCTAssertEqual(m.vmptrld(L.vmcsA), .succeed)
        expectRetire(&m, Bytes.vmlaunch, .failValid(7))
        XCTAssertEqual(m.vmx.current?.isEnlightened, false)
    }

    /// Guest-controlled input, seeded: random VP assist page contents, eVMCS
    /// addresses (good, unaligned, beyond RAM or MAXPHYADDR, the VMXON
    /// region), versions, clean-field words and field bytes. Every
    /// VMLAUNCH/VMRESUME ends in a defined outcome, and the cached VMCS12
    /// never holds a value wider than its field.
    func testRandomEnlightenedEntriesHaveDefinedOutcomes() {
        var r = XorShift64(seed: 0xE7C5_0001)
        var outcomes: [String: Int] = [:]
        var m = enlightenedMachine()
        writeBaseline(m)
        let addresses: [UInt64] = [Self.evmcs, Self.evmcs, Self.evmcs + UInt64(r.below(4096)), UInt64(L.ramSize) - 0x1000,
                                   UInt64(L.ramSize), 1 << 46, L.vmxonRegion, .max & ~0xfff]
        for _ in 0..<3000 {
            switch r.below(6) {
            case 0: _ = m.memory.store(r.pick(addresses), at: Self.assistPage + HyperV.VPAssistPage.currentNestedVMCSOffset)
            case 1: _ = m.memory.store(r.oneIn(4) ? 0 : r.byte(), at: Self.assistPage + HyperV.VPAssistPage.enlightenVMEntryOffset)
            case 2: _ = m.memory.store(r.oneIn(8) ? UInt32(truncatingIfNeeded: r.next()) : 1, at: Self.evmcs)
            case 3: _ = m.memory.store(UInt32(truncatingIfNeeded: r.next()), at: Self.evmcs + E.cleanFieldsOffset)
            case 4:
                let slot = r.pick(E.layout)
                _ = E.write(slot, r.oneIn(2) ? r.next() : 0, at: Self.evmcs, memory: m.memory)
            default: writeBaseline(m)
            }
            let e = m.run(r.oneIn(2) ? Bytes.vmlaunch : Bytes.vmresume)
            switch e.result {
            case .failInvalid: outcomes["failInvalid", default: 0] += 1
            case let .failValid(n):
                XCTAssertTrue([7, 8].contains(n), "VMfailValid \(n)")
                outcomes["failValid", default: 0] += 1
            case .vmEntry: outcomes["vmEntry", default: 0] += 1
            case .entryFailed: outcomes["entryFailed", default: 0] += 1
            case .fault, .succeed: XCTFail("\(e.result)")
            }
            if let c = m.vmx.current {
                for slot in E.layout { XCTAssertEqual((c.read(slot.field) ?? 0) & ~slot.field.width.valueMask, 0) }
            }
        }
        // Every kind of outcome is reached, so the run covers each path.
        XCTAssertEqual(Set(outcomes.keys), ["failInvalid", "failValid", "vmEntry", "entryFailed"], "\(outcomes)")
    }
}
