import XCTest
@testable import NestedVMX
import VMXArch

/// The capability MSRs (SDM Vol. 3C Appendix A) and IA32_FEATURE_CONTROL.
final class VMXCapabilityTests: XCTestCase {
    let caps = VMXCapabilities.terrapin(physicalAddressBits: 46)

    var controlMSRs: [(UInt32, String)] {
        [(VMXMSR.pinbasedCtls, "pin"), (VMXMSR.procbasedCtls, "proc"), (VMXMSR.procbasedCtls2, "proc2"),
         (VMXMSR.exitCtls, "exit"), (VMXMSR.entryCtls, "entry"), (VMXMSR.truePinbasedCtls, "true pin"),
         (VMXMSR.trueProcbasedCtls, "true proc"), (VMXMSR.trueExitCtls, "true exit"),
         (VMXMSR.trueEntryCtls, "true entry")]
    }

    func settings(_ msr: UInt32) -> AllowedSettings { AllowedSettings(rawValue: caps.read(msr: msr) ?? 0) }

    /// A.3-A.5: a control that must be 1 must be allowed to be 1.
    func testAllowed0SubsetOfAllowed1() {
        for (msr, name) in controlMSRs {
            let s = settings(msr)
            XCTAssertEqual(s.allowed0 & ~s.allowed1, 0, name)
        }
    }

    /// A.3.1, A.3.2, A.4.1, A.5: the non-true MSRs report every default-1 bit as must-be-1.
    func testDefault1BitsRequiredInNonTrueMSRs() {
        XCTAssertEqual(settings(VMXMSR.pinbasedCtls).allowed0 & DefaultSettings.pinBased, DefaultSettings.pinBased)
        XCTAssertEqual(settings(VMXMSR.procbasedCtls).allowed0 & DefaultSettings.processorBased, DefaultSettings.processorBased)
        XCTAssertEqual(settings(VMXMSR.exitCtls).allowed0 & DefaultSettings.exit, DefaultSettings.exit)
        XCTAssertEqual(settings(VMXMSR.entryCtls).allowed0 & DefaultSettings.entry, DefaultSettings.entry)
        // The true MSRs require nothing outside the default-1 class (A.2):
        // external-interrupt exiting may be 0, L0 delivers into L2's IDT then.
        XCTAssertEqual(settings(VMXMSR.truePinbasedCtls).allowed0 & ~DefaultSettings.pinBased, 0)
        XCTAssertEqual(settings(VMXMSR.trueProcbasedCtls).allowed0 & ~DefaultSettings.processorBased, 0)
        XCTAssertEqual(settings(VMXMSR.trueExitCtls).allowed0 & ~DefaultSettings.exit, 0)
        XCTAssertEqual(settings(VMXMSR.trueEntryCtls).allowed0 & ~DefaultSettings.entry, 0)
        XCTAssertNotEqual(caps.basic & 1 << 55, 0, "true MSRs exist")
    }

    /// Exiting controls L0 cannot deliver are allowed to be 0 and never
    /// allowed to be 1; those it carries out through patched code may be 1.
    func testTrueProcBasedUndeliverableExits() {
        let t = settings(VMXMSR.trueProcbasedCtls)
        let cr3: UInt32 = 1 << 15 | 1 << 16
        XCTAssertEqual(t.allowed0 & cr3, 0, "CR3-load/store exiting may be 0")
        XCTAssertEqual(t.allowed1 & cr3, cr3, "and 1")
        XCTAssertNotEqual(t.allowed1 & 1 << 9, 0, "INVLPG exiting may be 1")
        // "Use TPR shadow" (21).
        let never: [Int] = [21]
        for bit in never {
            XCTAssertEqual(t.allowed1 & 1 << bit, 0, "true procbased bit \(bit)")
            XCTAssertEqual(settings(VMXMSR.procbasedCtls).allowed1 & 1 << bit, 0, "procbased bit \(bit)")
        }
        // RDTSC exiting (12) and TSC offsetting (3): L0 carries them out at
        // L2's patched RDTSCs (docs/PATCHING.md).
        XCTAssertEqual(t.allowed1 & (1 << 12 | 1 << 3), 1 << 12 | 1 << 3)
        // CR8-load/store (19, 20), RDPMC (11), MONITOR (29), MWAIT (10) and
        // PAUSE (30) exiting: patched too, which Linux's VMX setup requires.
        // And the monitor trap flag (27), through KVM's single step.
        let patched: UInt32 = 1 << 19 | 1 << 20 | 1 << 11 | 1 << 29 | 1 << 10 | 1 << 30 | 1 << 27
        XCTAssertEqual(t.allowed1 & patched, patched)
        // Secondary controls available (allowed-1 of primary bit 31 -> MSR 0x48b exists).
        XCTAssertNotEqual(settings(VMXMSR.procbasedCtls).allowed1 & 1 << 31, 0)
        XCTAssertEqual(settings(VMXMSR.procbasedCtls).allowed1 & 1 << 17, 0, "no tertiary controls")
    }

    /// Every advertised MSR value, bit for bit (SDM Vol. 3C Appendix A). The
    /// constants were taken from the raw-shift construction before it was
    /// rebuilt from VMXArch's typed controls, so the rebuild changes nothing L1 sees.
    func testAdvertisedValuesArePinned() {
        let expected: [(UInt32, UInt64, String)] = [
            (VMXMSR.basic, 0x00d8_1000_5452_5031, "basic"),
            (VMXMSR.pinbasedCtls, 0x0000_005f_0000_0016, "pin"),
            (VMXMSR.truePinbasedCtls, 0x0000_005f_0000_0016, "true pin"),
            (VMXMSR.procbasedCtls, 0xff99_fffa_0401_e172, "proc"),
            (VMXMSR.trueProcbasedCtls, 0xff99_fffa_0400_6172, "true proc"),
            (VMXMSR.procbasedCtls2, 0x0001_18ee_0000_0000, "proc2"),
            (VMXMSR.exitCtls, 0x007f_efff_0003_6dff, "exit"),
            (VMXMSR.trueExitCtls, 0x007f_efff_0003_6dfb, "true exit"),
            (VMXMSR.entryCtls, 0x0000_d3ff_0000_11ff, "entry"),
            (VMXMSR.trueEntryCtls, 0x0000_d3ff_0000_11fb, "true entry"),
            (VMXMSR.misc, 0x0000_0000_0004_0065, "misc"),
            (VMXMSR.cr0Fixed0, 0x0000_0000_8000_0021, "cr0 fixed0"),
            (VMXMSR.cr0Fixed1, 0x0000_0000_ffff_ffff, "cr0 fixed1"),
            (VMXMSR.cr4Fixed0, 0, "cr4 fixed0"),
            (VMXMSR.cr4Fixed1, 0x0000_0000_0037_27ff, "cr4 fixed1"),
            (VMXMSR.eptVPIDCap, 0x0000_0f01_0633_4140, "ept/vpid"),
            (VMXMSR.vmfunc, 0, "vmfunc"),
        ]
        for (msr, value, name) in expected {
            XCTAssertEqual(caps.read(msr: msr), value, "\(name): \(String(caps.read(msr: msr) ?? 0, radix: 16))")
        }
        // VMXE (bit 13) is added to whatever CR4 bits the vCPU accepts.
        XCTAssertEqual(VMXCapabilities.terrapin(cr4Fixed1: 0).cr4Fixed1, 0x2000)
        XCTAssertEqual(VMXCapabilities.terrapin(physicalAddressBits: 39).physicalAddressBits, 39)
    }

    func testBasicAndMisc() {
        let basic = VMXBasic(rawValue: caps.basic)
        XCTAssertEqual(basic.revisionID, VMXCapabilities.revisionID)
        XCTAssertEqual(caps.basic & 1 << 31, 0, "revision bit 31 clear")
        XCTAssertEqual(basic.regionSize, 4096)
        XCTAssertEqual(basic.memoryType, 6)
        XCTAssertTrue(basic.insOutsReporting)
        XCTAssertTrue(basic.trueControls)
        XCTAssertFalse(basic.physicalAddressWidth32)
        let misc = VMXMisc(rawValue: caps.misc)
        XCTAssertFalse(misc.vmwriteAnyField, "exit-information fields stay read-only")
        XCTAssertTrue(misc.activityHLT)
        XCTAssertEqual(misc.cr3TargetCount, 4, "with CR3-load exiting, which patched code carries out")
    }

    /// A.9: VMCS_ENUM bits 9:1 = highest index.
    func testVMCSEnum() {
        XCTAssertEqual(caps.vmcsEnum, UInt64(VMCSField.highestIndex) << 1)
        XCTAssertEqual(caps.read(msr: VMXMSR.vmcsEnum).map { UInt16($0 >> 1 & 0x1ff) }, VMCSField.highestIndex)
        XCTAssertEqual(caps.vmcsEnum & ~0x3fe, 0)
    }

    /// A.7/A.8: CR0 PE, NE, PG fixed to 1; CR4.VMXE (bit 13) virtual: FIXED0 clear, FIXED1 set.
    func testFixedBits() {
        XCTAssertEqual(caps.cr0Fixed0 & 0x8000_0021, 0x8000_0021)
        XCTAssertEqual(caps.cr0Fixed0 & ~caps.cr0Fixed1, 0)
        XCTAssertEqual(caps.cr4Fixed0 & 1 << 13, 0)
        XCTAssertNotEqual(caps.cr4Fixed1 & 1 << 13, 0)
        XCTAssertEqual(caps.cr4Fixed0 & ~caps.cr4Fixed1, 0)
        XCTAssertTrue(caps.permitsCR0(0x8000_0031))
        XCTAssertFalse(caps.permitsCR0(0x8000_0011))
        XCTAssertFalse(caps.permitsCR0(0x0000_0031))
        XCTAssertTrue(caps.permitsCR4(0x2020))
    }

    func testEPTVPIDCapabilityMatchesSemantics() {
        let ept = EPTVPIDCapabilities(rawValue: caps.eptVPIDCap)
        XCTAssertTrue(ept.contains([.pageWalkLength4, .memoryTypeUC, .memoryTypeWB, .invept, .inveptSingleContext,
                                    .inveptAllContext, .invvpid, .invvpidIndividualAddress, .invvpidSingleContext,
                                    .invvpidAllContext, .invvpidSingleContextRetainGlobals]))
        XCTAssertTrue(ept.contains(.accessedDirty), "A/D flags are emulated (EPTWalker, EPT02)")
        XCTAssertFalse(ept.contains(.pageWalkLength5))
        for type in 0..<10 as Range<UInt64> {
            XCTAssertEqual(caps.supportsINVEPT(type: type), type == 1 || type == 2, "INVEPT \(type)")
            XCTAssertEqual(caps.supportsINVVPID(type: type), type < 4, "INVVPID \(type)")
        }
        XCTAssertFalse(caps.supportsINVEPT(type: .max))
        XCTAssertFalse(caps.supportsINVVPID(type: 1 << 40))
    }

    func testEveryCapabilityMSRReadable() {
        for msr in VMXMSR.capabilityRange {
            XCTAssertNotNil(caps.read(msr: msr), String(msr, radix: 16))
        }
        XCTAssertNil(caps.read(msr: 0x492))
        XCTAssertNil(caps.read(msr: 0x47f))
        let state = VMXState(capabilities: caps)
        XCTAssertEqual(state.readMSR(VMXMSR.featureControl), 0b101)
        XCTAssertEqual(state.readMSR(VMXMSR.basic), caps.basic)
    }

    /// IA32_FEATURE_CONTROL: a write once locked, or with unsupported bits, is #GP (false).
    func testFeatureControlWrites() {
        var locked = VMXState(capabilities: caps)
        XCTAssertFalse(locked.writeFeatureControl(0))
        XCTAssertEqual(locked.featureControl.rawValue, 0b101)

        var s = VMXState(capabilities: caps, lockedByFirmware: false)
        XCTAssertEqual(s.featureControl.rawValue, 0)
        XCTAssertFalse(s.writeFeatureControl(1 << 8), "SENTER bits unsupported")
        XCTAssertFalse(s.writeFeatureControl(1 << 20), "LMCE unsupported")
        XCTAssertEqual(s.featureControl.rawValue, 0)
        XCTAssertTrue(s.writeFeatureControl(0b100))
        XCTAssertEqual(s.featureControl.rawValue, 0b100)
        XCTAssertTrue(s.writeFeatureControl(0b101))
        XCTAssertEqual(s.featureControl.rawValue, 0b101)
        XCTAssertFalse(s.writeFeatureControl(0b100), "locked")
        XCTAssertFalse(s.writeFeatureControl(0b101), "locked, even the same value")
        XCTAssertEqual(s.featureControl.rawValue, 0b101)
    }

    /// The end-to-end path: unlocked feature control, VMXON #GP; enable and lock, VMXON succeeds.
    func testFeatureControlGatesVMXON() {
        var m = VMXMachine(lockedByFirmware: false)
        m.cpu.gprs[.rax] = TestLayout.operand
        _ = m.memory.store(TestLayout.vmxonRegion, at: TestLayout.operand)
        expectFault(&m, Bytes.vmxon, .generalProtection(0))
        XCTAssertTrue(m.vmx.writeFeatureControl(0b101))
        expectRetire(&m, Bytes.vmxon, .succeed)
    }
}

/// Terrapin's VMCS12 layout (documented in VMCS12.swift; SDM 25.2 leaves the format to us).
final class VMCS12Tests: XCTestCase {
    func testSlotsAreABijection() {
        let fields = VMCSField.allFields
        XCTAssertEqual(Set(fields).count, fields.count, "no duplicate fields")
        var seen = Set<Int>()
        for (i, f) in fields.enumerated() {
            XCTAssertEqual(VMCS12Layout.slot(of: f), i, f.name)
            if let h = f.high { XCTAssertEqual(VMCS12Layout.slot(of: h), i, "high access shares the slot") }
            seen.insert(VMCS12Layout.slot(of: f)!)
        }
        XCTAssertEqual(seen, Set(0..<fields.count))
        XCTAssertNil(VMCS12Layout.slot(of: VMCSField(0x7800)))
        XCTAssertNil(VMCS12Layout.slot(of: VMCSField(VMCSField.guestRIP.rawValue | 1)))
    }

    func testRegionFits() {
        let end = VMCS12Layout.offset(ofSlot: VMCSField.allFields.count - 1) + 8
        XCTAssertLessThanOrEqual(16 + 8 * VMCSField.allFields.count, VMCS12Layout.regionSize)
        XCTAssertLessThanOrEqual(end, UInt64(VMCS12Layout.regionSize))
        XCTAssertEqual(VMCS12Layout.offset(ofSlot: 0), 16)
        XCTAssertEqual(VMCS12Layout.offset(ofSlot: 5), 16 + 40)
        XCTAssertLessThanOrEqual(UInt64(VMCS12Layout.regionSize), VMXBasic(rawValue: VMXCapabilities.terrapin().basic).regionSize.toUInt64)
    }

    func testStoreLoadRoundTrip() throws {
        let mem = ArrayMemory(size: 0x4000)
        _ = mem.store(VMXCapabilities.revisionID, at: 0x1000)
        _ = mem.store(UInt32(0xabcd), at: 0x1004)               // abort indicator
        var v = VMCS12(address: 0x1000)
        for (i, f) in VMCSField.allFields.enumerated() {
            XCTAssertTrue(v.write(f, 0xf0e1_d2c3_b4a5_9687 &+ UInt64(i)))
        }
        v.launched = true
        XCTAssertTrue(v.store(to: mem))
        XCTAssertEqual(mem.load(UInt32.self, at: 0x1000), VMXCapabilities.revisionID, "revision untouched")
        XCTAssertEqual(mem.load(UInt32.self, at: 0x1004), 0xabcd, "abort indicator untouched")
        XCTAssertEqual(mem.load(UInt32.self, at: 0x1008), 1)
        XCTAssertEqual(mem.read(0x2000, count: 16), [UInt8](repeating: 0, count: 16), "nothing past the region")
        let loaded = try XCTUnwrap(VMCS12(loadingFrom: 0x1000, memory: mem))
        XCTAssertEqual(loaded, v)
        for (i, f) in VMCSField.allFields.enumerated() {
            XCTAssertEqual(loaded.read(f), (0xf0e1_d2c3_b4a5_9687 &+ UInt64(i)) & f.width.valueMask, f.name)
            XCTAssertEqual(mem.load(UInt64.self, at: 0x1000 + 16 + 8 * UInt64(i)), loaded.read(f), f.name)
        }
        // A region not wholly in RAM does not load; storing there reports failure.
        XCTAssertNil(VMCS12(loadingFrom: 0x3800, memory: mem))
        XCTAssertFalse(VMCS12(address: 0x4000).store(to: mem))
    }

    func testWriteWidthRules() {
        var v = VMCS12(address: 0)
        XCTAssertTrue(v.write(.guestESSelector, 0x1_2345))
        XCTAssertEqual(v.read(.guestESSelector), 0x2345)
        XCTAssertTrue(v.write(.vmInstructionError, 0x1_0000_0007))
        XCTAssertEqual(v.read(.vmInstructionError), 7)
        XCTAssertTrue(v.write(.tscOffset, 0x1111_2222_3333_4444))
        XCTAssertTrue(v.write(VMCSField.tscOffset.high!, 0xffff_ffff_5555_6666))
        XCTAssertEqual(v.read(.tscOffset), 0x5555_6666_3333_4444)
        XCTAssertEqual(v.read(VMCSField.tscOffset.high!), 0x5555_6666)
        XCTAssertFalse(v.write(VMCSField(0x7800), 1))
        XCTAssertNil(v.read(VMCSField(VMCSField.guestESSelector.rawValue | 1)))
    }
}

private extension UInt16 {
    var toUInt64: UInt64 { UInt64(self) }
}
