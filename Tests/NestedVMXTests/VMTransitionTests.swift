import NestedVMX
import VMXArch
import XCTest

/// The VM-entry and VM-exit sequences as plans (SDM Vol. 3C 27.3-27.7 and
/// 28.1-28.6): what the monitor applies, computed over plain memory.
final class VMTransitionTests: XCTestCase {
    let memory = ArrayMemory(size: 0x1_0000)

    func vmcs(_ fields: [(VMCSField, UInt64)]) -> VMCS12 {
        var v = VMCS12(address: 0x1000)
        for (f, value) in fields { XCTAssertTrue(v.write(f, value), "\(f)") }
        return v
    }

    func testEntryLoadsTheGuestStateAndConsumesTheEvent() {
        var l1 = CPUState()
        l1.gprs[.rax] = 0x1234
        let v = vmcs([(.guestRIP, 0x5000), (.guestRSP, 0x8000), (.guestActivityState, 1),
                      (.entryInterruptionInfo, 1 << 31 | 0x30), (.entryControls, UInt64(VMEntryControls.loadPAT.rawValue)),
                      (.guestIA32PAT, 0x0606), (.guestIA32SysenterEIP, 0xfeed)])
        let plan = VMTransitions.entry(vmcs: v, l1: l1, launch: true, memory: memory, maxMSRListEntries: 512)
        XCTAssertEqual(plan.guest.rip, 0x5000)
        XCTAssertEqual(plan.guest.gprs[.rsp], 0x8000)
        XCTAssertEqual(plan.guest.gprs[.rax], 0x1234, "VMX does not switch the other GPRs (27.3.2.1)")
        XCTAssertEqual(plan.event?.event, DeliveredEvent(kind: .externalInterrupt, vector: 0x30))
        XCTAssertFalse(plan.halted, "an injected event wakes the HLT activity state")
        XCTAssertTrue(plan.vmcs.launched)
        XCTAssertEqual(plan.vmcs.read(.entryInterruptionInfo), 0x30, "27.6: the valid bit is cleared")
        XCTAssertEqual(plan.guestMSRs.map(\.index), [0x174, 0x175, 0x176, 0x277], "SYSENTER always; PAT with load PAT; no DEBUGCTL")
        XCTAssertEqual(plan.guestMSRs.first { $0.index == 0x176 }?.value, 0xfeed)
        XCTAssertNil(plan.preemptionTimerTicks)
    }

    func testEntryWithoutAnEventKeepsAnHLTGuestHalted() {
        let v = vmcs([(.guestActivityState, 1), (.pinBasedControls, UInt64(PinBasedControls.activatePreemptionTimer.rawValue)),
                      (.guestVMXPreemptionTimerValue, 77)])
        let plan = VMTransitions.entry(vmcs: v, l1: CPUState(), launch: false, memory: memory, maxMSRListEntries: 512)
        XCTAssertTrue(plan.halted)
        XCTAssertNil(plan.event)
        XCTAssertFalse(plan.vmcs.launched, "VMRESUME does not change the launch state")
        XCTAssertEqual(plan.preemptionTimerTicks, 77)
    }

    /// 27.6.2: type 7 ("other event") with vector 0 injects a pending MTF
    /// VM exit, whatever the "monitor trap flag" control says; it is no
    /// event for L2's IDT, and the valid bit is consumed like any other.
    func testEntryInjectingAPendingMTFExit() {
        let v = vmcs([(.entryInterruptionInfo, 1 << 31 | 7 << 8)])
        let plan = VMTransitions.entry(vmcs: v, l1: CPUState(), launch: false, memory: memory, maxMSRListEntries: 512)
        XCTAssertTrue(plan.pendingMonitorTrap)
        XCTAssertNil(plan.event)
        XCTAssertEqual(plan.vmcs.read(.entryInterruptionInfo), 7 << 8)
        let plain = VMTransitions.entry(vmcs: vmcs([(.entryInterruptionInfo, 1 << 31 | 0x30)]), l1: CPUState(), launch: false,
                                        memory: memory, maxMSRListEntries: 512)
        XCTAssertFalse(plain.pendingMonitorTrap)
    }

    /// 27.8: a failed entry records reason 33 or 34 with bit 31 and its
    /// qualification, saves no guest state, skips the MSR-store list, and
    /// loads the host state, host MSRs and the VM-exit MSR-load list.
    func testAFailedEntryLoadsTheHostAsAnExitDoes() {
        _ = memory.store(UInt64(0x174), at: 0x3000)
        _ = memory.store(UInt64(0x10), at: 0x3008)
        var l1 = CPUState()
        l1.rip = 0x4444
        let v = vmcs([(.hostRIP, 0x9000), (.guestRIP, 0x5000), (.exitControls, UInt64(VMExitControls.loadPAT.rawValue)),
                      (.hostIA32PAT, 0x0606), (.exitMSRLoadAddress, 0x3000), (.exitMSRLoadCount, 1),
                      (.exitMSRStoreAddress, 0x3800), (.exitMSRStoreCount, 1)])
        let failed = VMTransitions.failedEntry(.msrLoad(index: 2), l1: l1, vmcs: v, memory: memory, maxMSRListEntries: 512)
        XCTAssertEqual(failed.vmcs.read(.exitReason), 0x8000_0022)
        XCTAssertEqual(failed.vmcs.read(.exitQualification), 2)
        XCTAssertEqual(failed.vmcs.read(.guestRIP), 0x5000, "no guest state is saved")
        XCTAssertEqual(failed.load.host.rip, 0x9000)
        XCTAssertTrue(failed.load.hostMSRs.contains(MSRValue(index: 0x277, value: 0x0606)))
        XCTAssertTrue(failed.load.hostMSRs.contains(MSRValue(index: 0x1d9, value: 0)), "DEBUGCTL cleared")
        XCTAssertEqual(failed.load.msrLoad.entries, [MSRAreaEntry(address: 0x3000, low: 0x174, value: 0x10)])
    }

    /// CS.L outside IA-32e mode is ignored by the SDM and refused by a
    /// vCPU: the entry clears it, and the exit gives L1 back the access
    /// rights it wrote while CS is the segment the entry loaded.
    func testCSLOutsideIA32eModeIsClearedForTheVCPUAndKeptForL1() {
        let v = vmcs([(.guestCSSelector, 8), (.guestCSLimit, 0xffff_ffff), (.guestCSAccessRights, 0xa09b)])
        let plan = VMTransitions.entry(vmcs: v, l1: CPUState(), launch: true, memory: memory, maxMSRListEntries: 512)
        XCTAssertFalse(plan.guest.longModeActive)
        XCTAssertFalse(plan.guest.cs.l, "the vCPU gets CS.L = 0")
        var saved = plan.vmcs
        StateTransfer.saveGuestState(plan.guest, into: &saved)
        XCTAssertEqual(saved.read(.guestCSAccessRights), 0xa09b, "unchanged CS: L1's L bit")
        var reloaded = plan.guest
        reloaded.cs.selector = 0x10
        StateTransfer.saveGuestState(reloaded, into: &saved)
        XCTAssertEqual(saved.read(.guestCSAccessRights), 0x809b, "a reloaded CS is saved as it is")
        let longMode = vmcs([(.entryControls, UInt64(VMEntryControls.ia32eModeGuest.rawValue)), (.guestCSAccessRights, 0xa09b)])
        XCTAssertTrue(VMTransitions.entry(vmcs: longMode, l1: CPUState(), launch: true, memory: memory, maxMSRListEntries: 512).guest.cs.l)
    }

    func testEntryReadsItsMSRLoadList() {
        _ = memory.store(UInt64(0x174), at: 0x2000)
        _ = memory.store(UInt64(9), at: 0x2008)
        let v = vmcs([(.entryMSRLoadAddress, 0x2000), (.entryMSRLoadCount, 1)])
        let plan = VMTransitions.entry(vmcs: v, l1: CPUState(), launch: true, memory: memory, maxMSRListEntries: 512)
        XCTAssertEqual(plan.msrLoadList, [MSRAreaEntry(address: 0x2000, low: 0x174, value: 9)])
    }

    func testExitSavesRecordsAndLoadsTheHost() {
        let exitControls: VMExitControls = [.hostAddressSpaceSize, .savePreemptionTimer, .savePAT, .loadPAT]
        let v = vmcs([(.exitControls, UInt64(exitControls.rawValue)), (.hostRIP, 0x40_0000), (.hostRSP, 0x9000),
                      (.hostCR3, 0x7000), (.hostIA32PAT, 0x0404), (.hostIA32SysenterCS, 8),
                      (.exitMSRStoreAddress, 0x3000), (.exitMSRStoreCount, 1)])
        _ = memory.store(UInt64(0x175), at: 0x3000)
        var l2 = CPUState()
        l2.rip = 0x1234
        let timer = PreemptionTimer(ticks: 50, tickNanos: 2)
        let plan = VMTransitions.exit(NestedExit(reason: .hlt, instructionLength: 1), l2: l2, l1: CPUState(), vmcs: v,
                                      entryEvent: nil, halted: true, preemptionTimer: timer,
                                      guestMSRs: [MSRValue(index: 0x277, value: 0x0707), MSRValue(index: 0x174, value: 3)], memory: memory, maxMSRListEntries: 512)
        XCTAssertEqual(plan.vmcs.read(.exitReason), 12)
        XCTAssertEqual(plan.vmcs.read(.exitInstructionLength), 1)
        XCTAssertEqual(plan.vmcs.read(.guestRIP), 0x1234)
        XCTAssertEqual(plan.vmcs.read(.guestActivityState), 1, "28.3.4: halted")
        XCTAssertEqual(plan.vmcs.read(.guestVMXPreemptionTimerValue), 50, "saved when asked (28.3.4)")
        XCTAssertEqual(plan.vmcs.read(.guestIA32PAT), 0x0707, "save PAT")
        XCTAssertEqual(plan.vmcs.read(.guestIA32SysenterCS), 3)
        XCTAssertEqual(plan.host.rip, 0x40_0000)
        XCTAssertEqual(plan.host.gprs[.rsp], 0x9000)
        XCTAssertEqual(plan.host.cr3, 0x7000)
        XCTAssertEqual(plan.hostMSRs.map(\.index), [0x174, 0x175, 0x176, 0x1d9, 0x277])
        XCTAssertEqual(plan.hostMSRs.first { $0.index == 0x1d9 }?.value, 0, "28.5.1: DEBUGCTL cleared")
        XCTAssertEqual(plan.msrStore.entries.map(\.index), [0x175])
        XCTAssertNil(plan.msrLoad.abort)
        XCTAssertTrue(plan.msrLoad.entries.isEmpty)
    }

    func testExitWithoutSaveControlsLeavesThoseFields() {
        let v = vmcs([(.guestVMXPreemptionTimerValue, 99), (.guestIA32PAT, 0x1111)])
        let plan = VMTransitions.exit(NestedExit(reason: .externalInterrupt), l2: CPUState(), l1: CPUState(), vmcs: v,
                                      entryEvent: nil, halted: false, preemptionTimer: PreemptionTimer(ticks: 1, tickNanos: 1),
                                      guestMSRs: [MSRValue(index: 0x277, value: 0x2222)], memory: memory, maxMSRListEntries: 512)
        XCTAssertEqual(plan.vmcs.read(.guestVMXPreemptionTimerValue), 99)
        XCTAssertEqual(plan.vmcs.read(.guestIA32PAT), 0x1111)
        XCTAssertEqual(plan.vmcs.read(.guestActivityState), 0)
        XCTAssertEqual(plan.hostMSRs.count, 4, "no PAT without load PAT")
    }
}
