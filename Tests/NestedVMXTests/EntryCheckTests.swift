@testable import NestedVMX
import VMXArch
import XCTest

/// The VM-entry checks of SDM Vol. 3C 27.2-27.4: a valid baseline VMCS12 (a
/// 64-bit L2 with flat segments, entered from a 64-bit L1) passes; each
/// mutation breaks one rule and must fail with exactly that check's name and
/// its error: VMfailValid 7 (27.2.1), VMfailValid 8 (27.2.2-27.2.4), exit
/// reason 33 with the 27.8 qualification (27.3.1) or 34 with the entry index
/// (27.4).
final class EntryCheckTests: XCTestCase {
    // MARK: Fixture

    struct Fixture {
        var vmcs = VMCS12(address: 0x9000)
        var memory = ArrayMemory(size: 0x20000)
        var caps = VMXCapabilities.terrapin()
        var platform = EntryPlatform()

        subscript(_ field: VMCSField) -> UInt64 {
            get { vmcs.read(field)! }
            set { vmcs.write(field, newValue) }
        }

        mutating func set(_ field: VMCSField, _ bits: UInt64) { self[field] |= bits }
        mutating func clear(_ field: VMCSField, _ bits: UInt64) { self[field] &= ~bits }

        func check(launch: Bool = true) -> VMEntryFailure? {
            VMEntryChecker.check(vmcs, capabilities: caps, memory: memory, launch: launch, platform: platform)
        }

        var context: EntryContext {
            EntryContext(vmcs: vmcs, capabilities: caps, memory: memory, launch: true, platform: platform)
        }

        /// Lets every control be 1, and be 0 where the SDM's default settings
        /// allow it, for the architectural rules on controls that Terrapin
        /// never allows (it requires external-interrupt exiting, for one).
        mutating func permissive() {
            func open(_ v: UInt64) -> UInt64 { v | 0xffff_ffff << 32 }
            caps.truePinBased &= ~UInt64(1)
            caps.pinBased = open(caps.pinBased); caps.truePinBased = open(caps.truePinBased)
            caps.procBased = open(caps.procBased); caps.trueProcBased = open(caps.trueProcBased)
            caps.procBased2 = open(caps.procBased2)
            caps.exit = open(caps.exit); caps.trueExit = open(caps.trueExit)
            caps.entry = open(caps.entry); caps.trueEntry = open(caps.trueEntry)
            caps.vmfunc = 1
        }

        /// Writes one 16-byte MSR-load entry.
        func msrEntry(_ i: Int, at base: UInt64, index: UInt64, value: UInt64 = 0) {
            _ = memory.store(index, at: base + 16 * UInt64(i))
            _ = memory.store(value, at: base + 16 * UInt64(i) + 8)
        }

        /// Makes the guest a 32-bit protected-mode guest with PAE paging.
        mutating func paeGuest() {
            clear(.entryControls, UInt64(VMEntryControls.ia32eModeGuest.rawValue))
            self[.guestIA32EFER] = 0
            self[.guestCSAccessRights] = 0xc09b
        }

        /// Valid virtual-8086 segments (27.3.1.2).
        mutating func v8086Segments() {
            self[.guestRFLAGS] = 0x20002
            for (sel, base, limit, ar): (VMCSField, VMCSField, VMCSField, VMCSField) in [
                (.guestESSelector, .guestESBase, .guestESLimit, .guestESAccessRights),
                (.guestCSSelector, .guestCSBase, .guestCSLimit, .guestCSAccessRights),
                (.guestSSSelector, .guestSSBase, .guestSSLimit, .guestSSAccessRights),
                (.guestDSSelector, .guestDSBase, .guestDSLimit, .guestDSAccessRights),
                (.guestFSSelector, .guestFSBase, .guestFSLimit, .guestFSAccessRights),
                (.guestGSSelector, .guestGSBase, .guestGSLimit, .guestGSAccessRights),
            ] {
                self[base] = self[sel] << 4; self[limit] = 0xffff; self[ar] = 0xf3
            }
        }
    }

    static let eptp = EPTPointer(rootAddress: 0x10000).rawValue
    static let flatData: UInt64 = 0xc093     // type 3, S, P, D/B, G
    static let code64: UInt64 = 0xa09b       // type 11, S, P, L, G
    static let busyTSS: UInt64 = 0x8b        // type 11, P
    static let pat: UInt64 = 0x0007_0406_0007_0406

    /// The valid baseline: every control from the TRUE MSRs' allowed-0
    /// settings plus what a 64-bit L1 running a 64-bit L2 with EPT uses.
    static func baseline() -> Fixture {
        var f = Fixture()
        let caps = f.caps
        func must(_ v: UInt64) -> UInt64 { v & 0xffff_ffff }
        f[.pinBasedControls] = must(caps.truePinBased)
        f[.processorBasedControls] = must(caps.trueProcBased) | UInt64(([.activateSecondaryControls, .hltExiting,
            .useIOBitmaps, .useMSRBitmaps] as ProcessorBasedControls).rawValue)
        f[.secondaryProcessorBasedControls] = UInt64(([.enableEPT, .enableVPID] as SecondaryProcessorBasedControls).rawValue)
        f[.exitControls] = must(caps.trueExit) | UInt64(([.hostAddressSpaceSize, .acknowledgeInterruptOnExit,
            .savePAT, .loadPAT, .saveEFER, .loadEFER] as VMExitControls).rawValue)
        f[.entryControls] = must(caps.trueEntry) | UInt64(([.ia32eModeGuest, .loadDebugControls, .loadPAT,
            .loadEFER] as VMEntryControls).rawValue)
        f[.eptPointer] = eptp
        f[.virtualProcessorID] = 1
        f[.ioBitmapA] = 0x2000; f[.ioBitmapB] = 0x3000; f[.msrBitmap] = 0x4000

        // Host: 64-bit L1.
        f[.hostCR0] = 0x8005_0033; f[.hostCR3] = 0x1000; f[.hostCR4] = 0x2020
        f[.hostCSSelector] = 0x08; f[.hostSSSelector] = 0x10; f[.hostDSSelector] = 0x10; f[.hostESSelector] = 0x10
        f[.hostTRSelector] = 0x18; f[.hostTRBase] = 0x7000; f[.hostGDTRBase] = 0x6000; f[.hostIDTRBase] = 0x6800
        f[.hostRIP] = 0x10_0000; f[.hostRSP] = 0x8000
        f[.hostIA32PAT] = pat; f[.hostIA32EFER] = 0xd01

        // Guest: 64-bit L2, flat segments, LDTR unusable.
        f[.guestCR0] = 0x8000_0031; f[.guestCR3] = 0x5000; f[.guestCR4] = 0x20
        f[.guestCSSelector] = 0x08; f[.guestCSLimit] = 0xffff_ffff; f[.guestCSAccessRights] = code64
        for (sel, limit, ar): (VMCSField, VMCSField, VMCSField) in [
            (.guestSSSelector, .guestSSLimit, .guestSSAccessRights), (.guestDSSelector, .guestDSLimit, .guestDSAccessRights),
            (.guestESSelector, .guestESLimit, .guestESAccessRights), (.guestFSSelector, .guestFSLimit, .guestFSAccessRights),
            (.guestGSSelector, .guestGSLimit, .guestGSAccessRights),
        ] { f[sel] = 0x10; f[limit] = 0xffff_ffff; f[ar] = flatData }
        f[.guestLDTRAccessRights] = 1 << 16
        f[.guestTRSelector] = 0x18; f[.guestTRBase] = 0x7000; f[.guestTRLimit] = 0x67; f[.guestTRAccessRights] = busyTSS
        f[.guestGDTRBase] = 0x6000; f[.guestGDTRLimit] = 0x1f; f[.guestIDTRLimit] = 0xfff
        f[.guestRIP] = 0x10_0000; f[.guestRSP] = 0x8000; f[.guestRFLAGS] = 0x2; f[.guestDR7] = 0x400
        f[.guestIA32PAT] = pat; f[.guestIA32EFER] = 0xd00
        f[.vmcsLinkPointer] = .max
        return f
    }

    /// The baseline with a 32-bit L1 as host (27.2.4: host address-space
    /// size 0, so no IA-32e-mode guest) and a 32-bit PAE L2.
    static func thirtyTwoBitHost() -> Fixture {
        var f = baseline()
        f.clear(.exitControls, UInt64(VMExitControls.hostAddressSpaceSize.rawValue))
        f.paeGuest()
        f[.hostIA32EFER] = 0x1                   // SCE; LME and LMA follow the address-space size
        f[.hostCR4] = 0x2020
        return f
    }

    /// VMLAUNCH through VMXSemantics, on a VMXMachine in `mode` whose
    /// current VMCS is `f`'s.
    func launch(_ f: Fixture, from mode: CPUMode, linearAddressBits: Int = 48) -> VMXResult {
        var m = VMXMachine(mode)
        m.vmx.capabilities.linearAddressBits = linearAddressBits
        m.enterVMX()
        m.vmx.current = f.vmcs
        return m.run(Bytes.vmlaunch).result
    }

    /// The entry checks see L1's IA32_EFER.LMA (27.2.4): a 32-bit L1 enters
    /// with a 32-bit host state, and a 64-bit L1 fails that same VMCS.
    func testTheEntryChecksSeeL1sMode() {
        XCTAssertEqual(launch(Self.thirtyTwoBitHost(), from: .protected32), .vmEntry(launch: true))
        XCTAssertEqual(launch(Self.thirtyTwoBitHost(), from: .long64), .failValid(8))
        XCTAssertEqual(launch(Self.baseline(), from: .long64), .vmEntry(launch: true))
        XCTAssertEqual(launch(Self.baseline(), from: .protected32), .failValid(8))
    }

    /// "Canonical" follows the linear-address width L1's CPUID gives: 57
    /// bits with 5-level paging (SDM Vol. 1 3.3.7.1; 27.2.3).
    func testCanonicalFollowsTheLinearAddressWidth() {
        var f = Self.baseline()
        f[.hostGSBase] = 0x0080_0000_0000_0000   // bit 55: canonical with 57 bits only
        XCTAssertEqual(launch(f, from: .long64, linearAddressBits: 57), .vmEntry(launch: true))
        XCTAssertEqual(launch(f, from: .long64, linearAddressBits: 48), .failValid(8))
        f[.hostGSBase] = 0x0100_0000_0000_0000   // bit 56 set, bits 63:57 clear: canonical for neither
        XCTAssertEqual(launch(f, from: .long64, linearAddressBits: 57), .failValid(8))
    }

    // MARK: Baseline and failure encoding

    func testBaselinePassesEveryCheck() {
        let f = Self.baseline()
        XCTAssertNil(f.check(launch: true))
        XCTAssertNil(f.check(launch: false))
        XCTAssertEqual(VMEntryChecker.allFailures(f.context), [])
    }

    func testFailureEncodings() {
        let c = VMEntryFailure.controls(check: "x"), h = VMEntryFailure.hostState(check: "y")
        let g = VMEntryFailure.guestState(check: "z", qualification: 4), m = VMEntryFailure.msrLoad(index: 3)
        XCTAssertEqual(c.vmInstructionError, 7); XCTAssertNil(c.exitReason); XCTAssertNil(c.exitQualification)
        XCTAssertEqual(h.vmInstructionError, 8); XCTAssertNil(h.exitReason)
        XCTAssertNil(g.vmInstructionError); XCTAssertEqual(g.exitReason, 0x8000_0021); XCTAssertEqual(g.exitQualification, 4)
        XCTAssertNil(m.vmInstructionError); XCTAssertEqual(m.exitReason, 0x8000_0022); XCTAssertEqual(m.exitQualification, 3)
        XCTAssertEqual(m.check, "27.4 VM-entry MSR-load list")
        XCTAssertEqual([c.group, h.group, g.group, m.group], [.controls, .hostState, .guestState, .msrLoad])
    }

    func testChecksRunInSDMOrderAndAreUniquelyNamed() {
        let groups = VMEntryChecker.checks.map(\.group)
        XCTAssertEqual(groups, groups.sorted())
        let names = VMEntryChecker.checks.map(\.name)
        XCTAssertEqual(Set(names).count, names.count)
        for c in VMEntryChecker.checks { XCTAssertTrue(c.name.hasPrefix(c.section + " "), c.name) }
        XCTAssertNotNil(VMEntryChecker.check(named: "27.2.1.1 VPID non-zero"))
        XCTAssertEqual(VMEntryChecker.checks(in: .msrLoad).count, 1)
    }

    func testControlsFailBeforeHostAndGuestState() {
        var f = Self.baseline()
        f[.virtualProcessorID] = 0                  // 27.2.1.1
        f[.hostCSSelector] = 0                      // 27.2.3
        f[.guestRFLAGS] = 0                         // 27.3.1.4
        XCTAssertEqual(f.check(), .controls(check: "27.2.1.1 VPID non-zero"))
        XCTAssertEqual(VMEntryChecker.allFailures(f.context).map(\.group), [.controls, .hostState, .guestState])
        f[.virtualProcessorID] = 1
        XCTAssertEqual(f.check(), .hostState(check: "27.2.3 host CS selector non-null"))
        f[.hostCSSelector] = 8
        XCTAssertEqual(f.check(), .guestState(check: "27.3.1.4 guest RFLAGS reserved bits", qualification: 0))
    }

    // MARK: One mutation per check

    struct Case {
        let expected: VMEntryFailure
        let line: UInt
        let setup: (inout Fixture) -> Void
    }

    static func ctl(_ name: String, line: UInt = #line, _ s: @escaping (inout Fixture) -> Void) -> Case {
        Case(expected: .controls(check: name), line: line, setup: s)
    }
    static func host(_ name: String, line: UInt = #line, _ s: @escaping (inout Fixture) -> Void) -> Case {
        Case(expected: .hostState(check: name), line: line, setup: s)
    }
    static func guest(_ name: String, _ q: UInt64 = 0, line: UInt = #line, _ s: @escaping (inout Fixture) -> Void) -> Case {
        Case(expected: .guestState(check: name, qualification: q), line: line, setup: s)
    }
    static func msr(_ index: Int, line: UInt = #line, _ s: @escaping (inout Fixture) -> Void) -> Case {
        Case(expected: .msrLoad(index: index), line: line, setup: s)
    }

    static let pin = VMCSField.pinBasedControls, proc = VMCSField.processorBasedControls
    static let proc2 = VMCSField.secondaryProcessorBasedControls
    static func bits(_ p: PinBasedControls) -> UInt64 { UInt64(p.rawValue) }
    static func bits(_ p: ProcessorBasedControls) -> UInt64 { UInt64(p.rawValue) }
    static func bits(_ p: SecondaryProcessorBasedControls) -> UInt64 { UInt64(p.rawValue) }
    static func bits(_ p: VMExitControls) -> UInt64 { UInt64(p.rawValue) }
    static func bits(_ p: VMEntryControls) -> UInt64 { UInt64(p.rawValue) }
    static func inject(type: UInt64, vector: UInt64, errorCode: Bool = false) -> UInt64 {
        1 << 31 | type << 8 | vector | (errorCode ? 1 << 11 : 0)
    }
    static let nonCanonical: UInt64 = 0x0000_8000_0000_0000

    /// 27.2.1 controls: VMfailValid 7.
    static var controlCases: [Case] { [
        ctl("27.2.1.1 pin-based controls reserved bits") { $0.clear(pin, 1 << 1) },           // default-1 bit
        ctl("27.2.1.1 pin-based controls reserved bits") { $0.set(pin, bits(.virtualNMIs)) },  // not allowed-1
        ctl("27.2.1.1 primary processor-based controls reserved bits") { $0.set(proc, bits(.nmiWindowExiting)) },
        ctl("27.2.1.1 primary processor-based controls reserved bits") { $0.clear(proc, 1 << 26) },
        ctl("27.2.1.1 secondary processor-based controls reserved bits") { $0.set(proc2, bits(.pauseLoopExiting)) },
        ctl("27.2.1.1 CR3-target count") { $0.caps.misc &= ~(0x1ff << 16); $0[.cr3TargetCount] = 1 },   // MISC reports none
        ctl("27.2.1.1 CR3-target count") { $0.caps.misc |= 4 << 16; $0[.cr3TargetCount] = 5 },
        ctl("27.2.1.1 I/O bitmap A address") { $0[.ioBitmapA] = 0x2001 },
        ctl("27.2.1.1 I/O bitmap B address") { $0[.ioBitmapB] = 1 << 46 },
        ctl("27.2.1.1 MSR bitmap address") { $0[.msrBitmap] = 0x4800 },
        ctl("27.2.1.1 virtual-APIC address") { f in
            f.permissive(); f.set(proc, bits(.useTPRShadow)); f[.virtualAPICAddress] = 0x8010
        },
        ctl("27.2.1.1 TPR threshold") { f in
            f.permissive(); f.set(proc, bits(.useTPRShadow)); f[.virtualAPICAddress] = 0x8000; f[.tprThreshold] = 0x10
        },
        ctl("27.2.1.1 TPR threshold") { f in   // threshold 5 above VTPR[7:4] = 4
            f.permissive(); f.set(proc, bits(.useTPRShadow)); f[.virtualAPICAddress] = 0x8000; f[.tprThreshold] = 5
            _ = f.memory.store(UInt8(0x40), at: 0x8080)
        },
        ctl("27.2.1.1 APIC virtualization requires TPR shadow") { f in
            f.permissive(); f.set(proc2, bits(.virtualizeX2APICMode))
        },
        ctl("27.2.1.1 virtual NMIs require NMI exiting") { f in f.permissive(); f.set(pin, bits(.virtualNMIs)) },
        ctl("27.2.1.1 NMI-window exiting requires virtual NMIs") { f in f.permissive(); f.set(proc, bits(.nmiWindowExiting)) },
        ctl("27.2.1.1 APIC-access address") { f in
            f.permissive(); f.set(proc2, bits(.virtualizeAPICAccesses)); f[.apicAccessAddress] = 0x123
        },
        ctl("27.2.1.1 virtualize x2APIC mode excludes virtualize APIC accesses") { f in
            f.permissive(); f.set(proc, bits(.useTPRShadow)); f[.virtualAPICAddress] = 0x8000
            f.set(proc2, bits([.virtualizeX2APICMode, .virtualizeAPICAccesses])); f[.apicAccessAddress] = 0xa000
        },
        ctl("27.2.1.1 virtual-interrupt delivery requires external-interrupt exiting") { f in
            f.permissive(); f.set(proc, bits(.useTPRShadow)); f[.virtualAPICAddress] = 0x8000
            f.set(proc2, bits(.virtualInterruptDelivery)); f.clear(pin, bits(.externalInterruptExiting))
        },
        ctl("27.2.1.1 posted-interrupt processing") { f in f.permissive(); f.set(pin, bits(.processPostedInterrupts)) },
        ctl("27.2.1.1 VPID non-zero") { $0[.virtualProcessorID] = 0 },
        ctl("27.2.1.1 EPTP memory type") { $0[.eptPointer] = eptp & ~7 | 1 },      // WC
        ctl("27.2.1.1 EPTP memory type") { f in                                // UC not advertised
            f.caps.eptVPIDCap &= ~EPTVPIDCapabilities.memoryTypeUC.rawValue; f[.eptPointer] = eptp & ~7
        },
        ctl("27.2.1.1 EPTP page-walk length") { $0[.eptPointer] = EPTPointer(rootAddress: 0x10000, pageWalkLevels: 5).rawValue },
        ctl("27.2.1.1 EPTP page-walk length") { $0[.eptPointer] = EPTPointer(rootAddress: 0x10000, pageWalkLevels: 2).rawValue },
        ctl("27.2.1.1 EPTP accessed and dirty flags") {
            $0.caps.eptVPIDCap &= ~(1 << 21); $0[.eptPointer] = eptp | 1 << 6    // A/D on a CPU without it
        },
        ctl("27.2.1.1 EPTP supervisor shadow-stack control") { $0[.eptPointer] = eptp | 1 << 7 },
        ctl("27.2.1.1 EPTP reserved bits") { $0[.eptPointer] = eptp | 1 << 8 },
        ctl("27.2.1.1 EPTP reserved bits") { $0[.eptPointer] = eptp | 1 << 46 },
        ctl("27.2.1.1 PML requires EPT and a valid PML address") { f in f.permissive(); f[proc2] = bits(.enablePML) },
        ctl("27.2.1.1 unrestricted guest requires EPT") { f in f.permissive(); f[proc2] = bits(.unrestrictedGuest) },
        ctl("27.2.1.1 mode-based execute control requires EPT") { f in f.permissive(); f[proc2] = bits(.modeBasedExecuteControl) },
        ctl("27.2.1.1 sub-page write permissions require EPT") { f in f.permissive(); f[proc2] = bits(.subPageWritePermissions) },
        ctl("27.2.1.1 VM-function controls") { f in f.permissive(); f.set(proc2, bits(.enableVMFunctions)); f[.vmFunctionControls] = 2 },
        ctl("27.2.1.1 VM-function controls") { f in   // EPTP switching with a misaligned EPTP list
            f.permissive(); f.set(proc2, bits(.enableVMFunctions)); f[.vmFunctionControls] = 1; f[.eptpListAddress] = 0x10
        },
        ctl("27.2.1.1 VMREAD and VMWRITE bitmap addresses") { f in
            f.permissive(); f.set(proc2, bits(.vmcsShadowing)); f[.vmreadBitmapAddress] = 0x1000; f[.vmwriteBitmapAddress] = 0x1001
        },
        ctl("27.2.1.1 virtualization-exception information address") { f in
            f.permissive(); f.set(proc2, bits(.eptViolationVE)); f[.virtualizationExceptionInfoAddress] = 0x10
        },
        // 27.2.1.2
        ctl("27.2.1.2 VM-exit controls reserved bits") { $0.clear(.exitControls, 1 << 0) },
        ctl("27.2.1.2 VM-exit controls reserved bits") { $0.set(.exitControls, bits(VMExitControls.loadPerfGlobalCtrl)) },
        ctl("27.2.1.2 save VMX-preemption timer requires activate VMX-preemption timer") {
            $0.permissive(); $0.set(.exitControls, bits(.savePreemptionTimer))
        },
        ctl("27.2.1.2 VM-exit MSR-store address") { $0[.exitMSRStoreCount] = 1; $0[.exitMSRStoreAddress] = 0x1008 },
        ctl("27.2.1.2 VM-exit MSR-load address") { $0[.exitMSRLoadCount] = 2; $0[.exitMSRLoadAddress] = (1 << 46) - 16 },
        // 27.2.1.3
        ctl("27.2.1.3 VM-entry controls reserved bits") { $0.set(.entryControls, bits(.loadBNDCFGS)) },
        ctl("27.2.1.3 VM-entry controls reserved bits") { $0.clear(.entryControls, 1 << 12) },
        ctl("27.2.1.3 event injection interruption type") { $0[.entryInterruptionInfo] = inject(type: 1, vector: 0x20) },
        ctl("27.2.1.3 event injection vector") { $0[.entryInterruptionInfo] = inject(type: 7, vector: 1) },  // MTF is vector 0
        ctl("27.2.1.3 event injection vector") { $0[.entryInterruptionInfo] = inject(type: 2, vector: 3) },
        ctl("27.2.1.3 event injection vector") { $0[.entryInterruptionInfo] = inject(type: 3, vector: 32) },
        ctl("27.2.1.3 event injection deliver-error-code bit") { $0[.entryInterruptionInfo] = inject(type: 3, vector: 13) },
        ctl("27.2.1.3 event injection deliver-error-code bit") {
            $0[.entryInterruptionInfo] = inject(type: 3, vector: 6, errorCode: true)
        },
        ctl("27.2.1.3 event injection deliver-error-code bit") {
            $0[.entryInterruptionInfo] = inject(type: 0, vector: 0x20, errorCode: true)
        },
        // Without "unrestricted guest", PE counts as 1 whatever the CR0 field
        // says: a #GP without its error code fails here, before the guest-state
        // checks get to CR0.
        ctl("27.2.1.3 event injection deliver-error-code bit") {
            $0.clear(.guestCR0, 1); $0[.entryInterruptionInfo] = inject(type: 3, vector: 13)
        },
        ctl("27.2.1.3 event injection reserved bits 30:12") {
            $0[.entryInterruptionInfo] = inject(type: 0, vector: 0x20) | 1 << 12
        },
        ctl("27.2.1.3 event injection error code bits 31:16") {
            $0[.entryInterruptionInfo] = inject(type: 3, vector: 13, errorCode: true); $0[.entryExceptionErrorCode] = 0x1_0000
        },
        ctl("27.2.1.3 event injection instruction length") { $0[.entryInterruptionInfo] = inject(type: 4, vector: 0x80) },
        ctl("27.2.1.3 event injection instruction length") {
            $0[.entryInterruptionInfo] = inject(type: 6, vector: 3); $0[.entryInstructionLength] = 16
        },
        ctl("27.2.1.3 VM-entry MSR-load address") { $0[.entryMSRLoadCount] = 1; $0[.entryMSRLoadAddress] = 0x1004 },
        ctl("27.2.1.3 entry to SMM and deactivate dual-monitor treatment") { f in
            f.permissive(); f.set(.entryControls, bits(.entryToSMM))
        },
        ctl("27.2.1.3 entry to SMM and deactivate dual-monitor treatment") { f in
            f.permissive(); f.platform.inSMM = true; f.set(.entryControls, bits([.entryToSMM, .deactivateDualMonitor]))
        },
    ] }

    /// 27.2.2-27.2.4 host state: VMfailValid 8.
    static var hostCases: [Case] { [
        host("27.2.2 host CR0 fixed bits") { $0[.hostCR0] = 0x31 },
        host("27.2.2 host CR0 fixed bits") { $0[.hostCR0] |= 1 << 32 },
        host("27.2.2 host CR4 fixed bits") { $0[.hostCR4] |= 1 << 23 },
        host("27.2.2 host CR3 physical-address width") { $0[.hostCR3] = 1 << 46 },
        host("27.2.2 host IA32_SYSENTER_ESP canonical") { $0[.hostIA32SysenterESP] = nonCanonical },
        host("27.2.2 host IA32_SYSENTER_EIP canonical") { $0[.hostIA32SysenterEIP] = nonCanonical },
        host("27.2.2 host IA32_PAT memory types") { $0[.hostIA32PAT] = 0x0007_0406_0002_0406 },
        host("27.2.2 host IA32_EFER reserved bits") { $0[.hostIA32EFER] |= 2 },
        host("27.2.2 host IA32_EFER.LMA and LME match host address-space size") { $0[.hostIA32EFER] = 0x101 },
        host("27.2.3 host selectors RPL and TI") { $0[.hostDSSelector] = 0x13 },
        host("27.2.3 host selectors RPL and TI") { $0[.hostTRSelector] = 0x1c },
        host("27.2.3 host CS selector non-null") { $0[.hostCSSelector] = 0 },
        host("27.2.3 host TR selector non-null") { $0[.hostTRSelector] = 0 },
        host("27.2.3 host SS selector non-null without host address-space size") { f in
            f.platform.processorInIA32eMode = false
            f.clear(.exitControls, bits(.hostAddressSpaceSize)); f[.hostIA32EFER] = 1
            f.clear(.entryControls, bits(.ia32eModeGuest)); f[.hostSSSelector] = 0
        },
        host("27.2.3 host FS, GS, GDTR, IDTR and TR bases canonical") { $0[.hostGSBase] = nonCanonical },
        host("27.2.3 host FS, GS, GDTR, IDTR and TR bases canonical") { $0[.hostIDTRBase] = nonCanonical },
        host("27.2.4 IA-32e mode guest requires the processor in IA-32e mode") { $0.platform.processorInIA32eMode = false },
        host("27.2.4 host address-space size matches IA-32e mode") { f in
            f.clear(.exitControls, bits([.hostAddressSpaceSize, .loadEFER]))
        },
        host("27.2.4 32-bit host: no IA-32e mode guest, CR4.PCIDE and RIP 63:32 zero") { f in
            f.platform.processorInIA32eMode = false
            f.clear(.exitControls, bits([.hostAddressSpaceSize, .loadEFER])); f.clear(.entryControls, bits(.ia32eModeGuest))
            f[.hostRIP] = 1 << 32
        },
        host("27.2.4 32-bit host: no IA-32e mode guest, CR4.PCIDE and RIP 63:32 zero") { f in
            f.platform.processorInIA32eMode = false
            f.clear(.exitControls, bits([.hostAddressSpaceSize, .loadEFER])); f.clear(.entryControls, bits(.ia32eModeGuest))
            f[.hostCR4] |= 1 << 17
        },
        host("27.2.4 64-bit host: CR4.PAE set and RIP canonical") { $0[.hostCR4] = 0x2000 },
        host("27.2.4 64-bit host: CR4.PAE set and RIP canonical") { $0[.hostRIP] = nonCanonical },
    ] }

    /// 27.3.1 guest state: exit reason 33, qualification of 27.8.
    static var guestCases: [Case] { [
        // 27.3.1.1
        guest("27.3.1.1 guest CR0 fixed bits") { $0[.guestCR0] &= ~(1 << 5) },              // NE
        guest("27.3.1.1 guest CR0 fixed bits") { $0[.guestCR0] &= ~1 },                     // PE without URG
        guest("27.3.1.1 guest CR0.PG requires CR0.PE") { f in
            f.permissive(); f.set(proc2, bits(.unrestrictedGuest)); f[.guestCR0] = 0x8000_0020
        },
        guest("27.3.1.1 guest CR4 fixed bits") { $0[.guestCR4] |= 1 << 22 },
        guest("27.3.1.1 guest CR4.CET requires CR0.WP") { f in
            f.caps.cr4Fixed1 |= 1 << 23; f[.guestCR4] |= 1 << 23
        },
        guest("27.3.1.1 guest IA32_DEBUGCTL reserved bits") { $0[.guestIA32Debugctl] = 1 << 2 },
        guest("27.3.1.1 IA-32e mode guest requires CR0.PG and CR4.PAE") { $0[.guestCR4] = 0 },
        guest("27.3.1.1 guest CR4.PCIDE requires IA-32e mode guest") { f in f.paeGuest(); f[.guestCR4] |= 1 << 17 },
        guest("27.3.1.1 guest CR3 physical-address width") { $0[.guestCR3] = 1 << 46 | 0x5000 },
        guest("27.3.1.1 guest DR7 bits 63:32") { $0[.guestDR7] = 1 << 32 | 0x400 },
        guest("27.3.1.1 guest IA32_SYSENTER_ESP canonical") { $0[.guestIA32SysenterESP] = nonCanonical },
        guest("27.3.1.1 guest IA32_SYSENTER_EIP canonical") { $0[.guestIA32SysenterEIP] = nonCanonical },
        guest("27.3.1.1 guest IA32_PAT memory types") { $0[.guestIA32PAT] = 0x02 },
        guest("27.3.1.1 guest IA32_EFER reserved bits") { $0[.guestIA32EFER] |= 2 },
        guest("27.3.1.1 guest IA32_EFER.LMA matches IA-32e mode guest") { $0[.guestIA32EFER] = 0x100 },
        guest("27.3.1.1 guest IA32_EFER.LME matches IA-32e mode guest when CR0.PG") { $0[.guestIA32EFER] = 0x400 },
        // 27.3.1.2 selectors and bases
        guest("27.3.1.2 guest TR selector TI") { $0[.guestTRSelector] = 0x1c },
        guest("27.3.1.2 guest LDTR selector TI") { f in
            f[.guestLDTRSelector] = 0x24; f[.guestLDTRLimit] = 0xffff; f[.guestLDTRAccessRights] = 0x82
        },
        guest("27.3.1.2 guest SS RPL equals CS RPL") { $0[.guestSSSelector] = 0x13 },
        guest("27.3.1.2 virtual-8086 segment bases") { $0[.guestRFLAGS] = 0x20002 },
        guest("27.3.1.2 virtual-8086 segment limits") { f in
            f.v8086Segments(); f[.guestDSLimit] = 0xffff_ffff
        },
        guest("27.3.1.2 virtual-8086 segment access rights") { f in
            f.v8086Segments(); f[.guestCSAccessRights] = 0xfb
        },
        guest("27.3.1.2 guest TR, FS and GS bases canonical") { $0[.guestFSBase] = nonCanonical },
        guest("27.3.1.2 guest TR, FS and GS bases canonical") { $0[.guestTRBase] = nonCanonical },
        guest("27.3.1.2 guest LDTR base canonical") { f in
            f[.guestLDTRSelector] = 0x20; f[.guestLDTRLimit] = 0xffff; f[.guestLDTRAccessRights] = 0x82
            f[.guestLDTRBase] = nonCanonical
        },
        guest("27.3.1.2 guest CS base bits 63:32") { $0[.guestCSBase] = 1 << 32 },
        guest("27.3.1.2 guest SS, DS and ES base bits 63:32") { $0[.guestDSBase] = 1 << 32 },
        // 27.3.1.2 access rights
        guest("27.3.1.2 guest CS type") { $0[.guestCSAccessRights] = code64 & ~1 },          // not accessed
        guest("27.3.1.2 guest CS type") { $0[.guestCSAccessRights] = code64 & ~0xf | 3 },    // data, no URG
        guest("27.3.1.2 guest SS type") { $0[.guestSSAccessRights] = flatData & ~0xf | 1 },
        guest("27.3.1.2 guest DS, ES, FS and GS type") { $0[.guestDSAccessRights] = flatData & ~1 },
        guest("27.3.1.2 guest DS, ES, FS and GS type") { $0[.guestGSAccessRights] = flatData & ~0xf | 9 },  // exec-only code
        guest("27.3.1.2 guest CS, SS, DS, ES, FS and GS S bit") { $0[.guestESAccessRights] = flatData & ~0x10 },
        guest("27.3.1.2 guest CS DPL") { $0[.guestCSAccessRights] = code64 | 3 << 5 },
        guest("27.3.1.2 guest CS DPL") { f in   // conforming code with DPL above SS.DPL
            f[.guestCSAccessRights] = code64 | 0xf | 3 << 5
        },
        guest("27.3.1.2 guest SS DPL") { f in
            f[.guestCSAccessRights] = code64 | 0xf; f[.guestSSAccessRights] = flatData | 3 << 5
        },
        guest("27.3.1.2 guest DS, ES, FS and GS DPL") { $0[.guestDSSelector] = 0x13 },
        guest("27.3.1.2 guest CS, SS, DS, ES, FS and GS present") { $0[.guestGSAccessRights] = flatData & ~0x80 },
        guest("27.3.1.2 guest CS, SS, DS, ES, FS and GS present") { $0[.guestCSAccessRights] = code64 & ~0x80 },
        guest("27.3.1.2 guest CS, SS, DS, ES, FS and GS access-rights reserved bits") { $0[.guestFSAccessRights] = flatData | 0x100 },
        guest("27.3.1.2 guest CS, SS, DS, ES, FS and GS access-rights reserved bits") { $0[.guestCSAccessRights] = code64 | 1 << 20 },
        guest("27.3.1.2 guest CS D/B with L in IA-32e mode") { $0[.guestCSAccessRights] = code64 | 1 << 14 },
        guest("27.3.1.2 guest CS, SS, DS, ES, FS and GS limit and granularity") { $0[.guestDSLimit] = 0x1000 },
        guest("27.3.1.2 guest CS, SS, DS, ES, FS and GS limit and granularity") { f in
            f[.guestSSLimit] = 0x10_0000; f[.guestSSAccessRights] = flatData & ~0x8000
        },
        guest("27.3.1.2 guest TR type") { $0[.guestTRAccessRights] = 0x89 },
        guest("27.3.1.2 guest TR type") { $0[.guestTRAccessRights] = 0x83 },   // 16-bit TSS in IA-32e mode
        guest("27.3.1.2 guest TR S bit") { $0[.guestTRAccessRights] = busyTSS | 0x10 },
        guest("27.3.1.2 guest TR present") { $0[.guestTRAccessRights] = busyTSS & ~0x80 },
        guest("27.3.1.2 guest TR access-rights reserved bits") { $0[.guestTRAccessRights] = busyTSS | 1 << 17 },
        guest("27.3.1.2 guest TR limit and granularity") { $0[.guestTRAccessRights] = busyTSS | 0x8000 },
        guest("27.3.1.2 guest TR usable") { $0[.guestTRAccessRights] = busyTSS | 1 << 16 },
        guest("27.3.1.2 guest LDTR type") { f in f[.guestLDTRLimit] = 0xffff; f[.guestLDTRAccessRights] = 0x83 },
        guest("27.3.1.2 guest LDTR S bit") { f in f[.guestLDTRLimit] = 0xffff; f[.guestLDTRAccessRights] = 0x92 },
        guest("27.3.1.2 guest LDTR present") { f in f[.guestLDTRLimit] = 0xffff; f[.guestLDTRAccessRights] = 0x02 },
        guest("27.3.1.2 guest LDTR access-rights reserved bits") { f in
            f[.guestLDTRLimit] = 0xffff; f[.guestLDTRAccessRights] = 0x182
        },
        guest("27.3.1.2 guest LDTR limit and granularity") { f in
            f[.guestLDTRLimit] = 0xfff0; f[.guestLDTRAccessRights] = 0x8082
        },
        // 27.3.1.3
        guest("27.3.1.3 guest GDTR and IDTR bases canonical") { $0[.guestGDTRBase] = nonCanonical },
        guest("27.3.1.3 guest GDTR and IDTR limit bits 31:16") { $0[.guestIDTRLimit] = 0x1_0000 },
        // 27.3.1.4
        guest("27.3.1.4 guest RIP") { $0[.guestRIP] = nonCanonical },
        guest("27.3.1.4 guest RIP") { f in f[.guestCSAccessRights] = 0xc09b; f[.guestRIP] = 1 << 32 },   // compatibility mode
        guest("27.3.1.4 guest RFLAGS reserved bits") { $0[.guestRFLAGS] = 0 },
        guest("27.3.1.4 guest RFLAGS reserved bits") { $0[.guestRFLAGS] = 0x2 | 1 << 15 },
        guest("27.3.1.4 guest RFLAGS reserved bits") { $0[.guestRFLAGS] = 0x2 | 1 << 22 },
        guest("27.3.1.4 guest RFLAGS.VM outside IA-32e and real mode") { $0.v8086Segments() },
        guest("27.3.1.4 guest RFLAGS.IF for external-interrupt injection") {
            $0[.entryInterruptionInfo] = inject(type: 0, vector: 0x20)
        },
        // 27.3.1.5 activity and interruptibility
        guest("27.3.1.5 guest activity state supported") { $0[.guestActivityState] = 2 },   // shutdown: not advertised
        guest("27.3.1.5 guest activity state supported") { $0[.guestActivityState] = 4 },
        guest("27.3.1.5 guest HLT activity state requires SS.DPL 0") { f in
            f[.guestCSSelector] = 0x0b; f[.guestCSAccessRights] = code64 | 0xf
            f[.guestSSSelector] = 0x13; f[.guestSSAccessRights] = flatData | 3 << 5
            f[.guestActivityState] = 1
        },
        guest("27.3.1.5 guest activity state active with STI or MOV-SS blocking") { f in
            f[.guestActivityState] = 1; f[.guestRFLAGS] = 0x202; f[.guestInterruptibilityState] = 1
        },
        guest("27.3.1.5 event injection allowed in the activity state") { f in
            f[.guestActivityState] = 1; f[.entryInterruptionInfo] = inject(type: 3, vector: 13, errorCode: true)
        },
        guest("27.3.1.5 wait-for-SIPI activity state with entry to SMM") { f in
            f.permissive(); f.platform.inSMM = true; f.caps.misc |= 1 << 8
            f.set(.entryControls, bits(.entryToSMM)); f[.guestActivityState] = 3
        },
        guest("27.3.1.5 guest interruptibility reserved bits") { $0[.guestInterruptibilityState] = 1 << 5 },
        guest("27.3.1.5 guest interruptibility reserved bits") { $0[.guestInterruptibilityState] = 1 << 4 },  // no SGX
        guest("27.3.1.5 guest STI and MOV-SS blocking not both set") { f in
            f[.guestRFLAGS] = 0x202; f[.guestInterruptibilityState] = 3
        },
        guest("27.3.1.5 guest STI blocking requires RFLAGS.IF") { $0[.guestInterruptibilityState] = 1 },
        guest("27.3.1.5 no STI or MOV-SS blocking when injecting an external interrupt") { f in
            f[.guestRFLAGS] = 0x202; f[.guestInterruptibilityState] = 2; f[.entryInterruptionInfo] = inject(type: 0, vector: 0x20)
        },
        guest("27.3.1.5 no MOV-SS blocking when injecting an NMI") { f in
            f[.guestInterruptibilityState] = 2; f[.entryInterruptionInfo] = inject(type: 2, vector: 2)
        },
        guest("27.3.1.5 SMI blocking outside SMM") { $0[.guestInterruptibilityState] = 4 },
        guest("27.3.1.5 SMI blocking with entry to SMM") { f in
            f.permissive(); f.platform.inSMM = true; f.set(.entryControls, bits(.entryToSMM))
        },
        guest("27.3.1.5 no virtual-NMI blocking when injecting an NMI") { f in
            f.permissive(); f.set(pin, bits([.nmiExiting, .virtualNMIs]))
            f[.guestInterruptibilityState] = 8; f[.entryInterruptionInfo] = inject(type: 2, vector: 2)
        },
        guest("27.3.1.5 no STI blocking when injecting an NMI", EntryFailureQualification.nmiBlockedBySTI) { f in
            f[.guestRFLAGS] = 0x202; f[.guestInterruptibilityState] = 1; f[.entryInterruptionInfo] = inject(type: 2, vector: 2)
        },
        // 27.3.1.5 pending debug exceptions
        guest("27.3.1.5 guest pending debug exceptions reserved bits") { $0[.guestPendingDebugExceptions] = 1 << 4 },
        guest("27.3.1.5 guest pending debug exceptions reserved bits") { $0[.guestPendingDebugExceptions] = 1 << 16 },  // no RTM
        guest("27.3.1.5 guest pending debug exceptions BS bit") { f in   // TF=1, BTF=0 under STI blocking: BS required
            f[.guestRFLAGS] = 0x302; f[.guestInterruptibilityState] = 1
        },
        guest("27.3.1.5 guest pending debug exceptions BS bit") { f in   // TF=0 in HLT: BS forbidden
            f[.guestActivityState] = 1; f[.guestPendingDebugExceptions] = 1 << 14
        },
        guest("27.3.1.5 guest pending debug exceptions RTM bit") { f in
            f.platform.supportsRTM = true; f[.guestPendingDebugExceptions] = 1 << 16 | 1
        },
        // 27.3.1.5 VMCS link pointer: qualification 4
        guest("27.3.1.5 VMCS link pointer address", EntryFailureQualification.vmcsLinkPointer) { $0[.vmcsLinkPointer] = 0x8001 },
        guest("27.3.1.5 VMCS link pointer address", EntryFailureQualification.vmcsLinkPointer) { $0[.vmcsLinkPointer] = 1 << 46 },
        guest("27.3.1.5 VMCS link pointer revision identifier", EntryFailureQualification.vmcsLinkPointer) {
            $0[.vmcsLinkPointer] = 0x8000
        },
        guest("27.3.1.5 VMCS link pointer revision identifier", EntryFailureQualification.vmcsLinkPointer) { f in
            _ = f.memory.store(VMXCapabilities.revisionID | 1 << 31, at: 0x8000); f[.vmcsLinkPointer] = 0x8000   // shadow bit, no shadowing
        },
        guest("27.3.1.5 VMCS link pointer revision identifier", EntryFailureQualification.vmcsLinkPointer) {
            $0[.vmcsLinkPointer] = 0x10_0000   // outside RAM
        },
        guest("27.3.1.5 VMCS link pointer not the current VMCS", EntryFailureQualification.vmcsLinkPointer) { f in
            _ = f.memory.store(VMXCapabilities.revisionID, at: 0x9000); f[.vmcsLinkPointer] = 0x9000
        },
        // 27.3.1.6 PDPTEs: qualification 2
        guest("27.3.1.6 guest PDPTEs", EntryFailureQualification.pdpte) { f in   // EPT: the PDPTE fields
            f.paeGuest(); f[.guestPDPTE2] = 0x1000 | 1 | 1 << 1
        },
        guest("27.3.1.6 guest PDPTEs", EntryFailureQualification.pdpte) { f in
            f.paeGuest(); f[.guestPDPTE0] = 1 | 1 << 46
        },
        guest("27.3.1.6 guest PDPTEs", EntryFailureQualification.pdpte) { f in   // no EPT: from guest memory at CR3
            f.paeGuest(); f.clear(proc2, bits(.enableEPT)); f[.guestCR3] = 0x5020
            _ = f.memory.store(UInt64(0x6001 | 1 << 7), at: 0x5020 + 24)
        },
    ] }

    /// 27.4 MSR-load list: exit reason 34, qualification = 1-based entry index.
    static var msrCases: [Case] { [
        msr(1) { f in f[.entryMSRLoadCount] = 1; f[.entryMSRLoadAddress] = 0xc000; f.msrEntry(0, at: 0xc000, index: 1 << 32 | 0x277) },
        msr(2) { f in
            f[.entryMSRLoadCount] = 3; f[.entryMSRLoadAddress] = 0xc000
            f.msrEntry(0, at: 0xc000, index: 0x277, value: pat); f.msrEntry(1, at: 0xc000, index: 0xc000_0100)
        },
        msr(1) { f in f[.entryMSRLoadCount] = 1; f[.entryMSRLoadAddress] = 0xc000; f.msrEntry(0, at: 0xc000, index: 0xc000_0101) },
        msr(3) { f in
            f[.entryMSRLoadCount] = 3; f[.entryMSRLoadAddress] = 0xc000
            f.msrEntry(0, at: 0xc000, index: 0x174); f.msrEntry(1, at: 0xc000, index: 0x175)
            f.msrEntry(2, at: 0xc000, index: 0x808)   // x2APIC TPR
        },
        msr(1) { f in f[.entryMSRLoadCount] = 1; f[.entryMSRLoadAddress] = 0xc000; f.msrEntry(0, at: 0xc000, index: 0x9b) },
        msr(1) { f in f[.entryMSRLoadCount] = 1; f[.entryMSRLoadAddress] = 0xc000; f.msrEntry(0, at: 0xc000, index: 0x79) },
        msr(2) { f in   // WRMSR would #GP: the platform says so
            f.platform.wrmsrFaults = { index, value in index == 0xc000_0080 && value & 1 << 1 != 0 }
            f[.entryMSRLoadCount] = 2; f[.entryMSRLoadAddress] = 0xc000
            f.msrEntry(0, at: 0xc000, index: 0xc000_0080, value: 0xd01)
            f.msrEntry(1, at: 0xc000, index: 0xc000_0080, value: 0xd03)
        },
        msr(513) { f in f[.entryMSRLoadCount] = 513; f[.entryMSRLoadAddress] = 0x1000 },   // beyond 512 · (N+1)
        msr(2) { f in f[.entryMSRLoadCount] = 2; f[.entryMSRLoadAddress] = 0x1fff0 },      // entry 2 outside RAM
    ] }

    static var allCases: [Case] { controlCases + hostCases + guestCases + msrCases }

    func testEveryMutationFailsWithItsCheck() {
        for c in Self.allCases {
            var f = Self.baseline()
            c.setup(&f)
            let got = f.check()
            XCTAssertEqual(got, c.expected, "mutation at line \(c.line)", line: c.line)
            // The error the guest sees follows from the group.
            switch c.expected.group {
            case .controls: XCTAssertEqual(got?.vmInstructionError, 7, line: c.line)
            case .hostState: XCTAssertEqual(got?.vmInstructionError, 8, line: c.line)
            case .guestState: XCTAssertEqual(got?.exitReason, 0x8000_0021, line: c.line)
            case .msrLoad: XCTAssertEqual(got?.exitReason, 0x8000_0022, line: c.line)
            }
        }
    }

    func testEveryCheckHasAFailingMutation() {
        let covered = Set(Self.allCases.map(\.expected.check))
        for c in VMEntryChecker.checks { XCTAssertTrue(covered.contains(c.name), "no mutation for \(c.name)") }
    }

    // MARK: Valid variations that must still pass

    static var passingVariations: [(UInt, (inout Fixture) -> Void)] { [
            (#line, { $0[.entryInterruptionInfo] = inject(type: 3, vector: 14, errorCode: true); $0[.entryExceptionErrorCode] = 2 }),
            (#line, { $0[.entryInterruptionInfo] = inject(type: 3, vector: 3) }),
            (#line, { $0[.entryInterruptionInfo] = inject(type: 2, vector: 2) }),
            (#line, { $0[.guestRFLAGS] = 0x202; $0[.entryInterruptionInfo] = inject(type: 0, vector: 0x20) }),
            (#line, { $0[.entryInterruptionInfo] = inject(type: 4, vector: 0x80); $0[.entryInstructionLength] = 2 }),
            (#line, { $0.caps.misc |= 4 << 16; $0[.cr3TargetCount] = 4 }),
            (#line, { $0.clear(proc, bits([.useIOBitmaps, .useMSRBitmaps])); $0[.ioBitmapA] = 1; $0[.msrBitmap] = 1 }),
            (#line, { $0.clear(proc2, bits(.enableVPID)); $0[.virtualProcessorID] = 0 }),
            (#line, { $0.clear(proc, bits(ProcessorBasedControls.activateSecondaryControls)); $0[proc2] = bits(.unrestrictedGuest) }),
            (#line, { $0.clear(proc2, bits(.enableEPT)); $0[.eptPointer] = 0xfff }),
            (#line, { $0[.eptPointer] = EPTPointer(rootAddress: 0x10000, memoryType: 0).rawValue }),
            (#line, { $0[.guestActivityState] = 1 }),
            (#line, { $0[.guestActivityState] = 1; $0[.entryInterruptionInfo] = inject(type: 0, vector: 0x20); $0[.guestRFLAGS] = 0x202 }),
            (#line, { $0[.guestRFLAGS] = 0x302; $0[.guestInterruptibilityState] = 1; $0[.guestPendingDebugExceptions] = 1 << 14 }),
            (#line, { $0[.guestInterruptibilityState] = 8 }),
            (#line, { f in _ = f.memory.store(VMXCapabilities.revisionID, at: 0x8000); f[.vmcsLinkPointer] = 0x8000 }),
            (#line, { f in f.paeGuest(); f[.guestPDPTE0] = 0x1000 | 1; f[.guestPDPTE1] = 0xffff_fffe }),   // not present
            (#line, { f in f.paeGuest(); f.clear(proc2, bits(.enableEPT)); _ = f.memory.store(UInt64(0x6001), at: 0x5000) }),
            (#line, { f in
                f[.entryMSRLoadCount] = 2; f[.entryMSRLoadAddress] = 0xc000
                f.msrEntry(0, at: 0xc000, index: 0x277, value: pat); f.msrEntry(1, at: 0xc000, index: 0xc000_0102, value: 1)
            }),
            (#line, { $0[.exitMSRStoreCount] = 4; $0[.exitMSRStoreAddress] = 0xd000 }),
            (#line, { f in f.v8086Segments(); f.paeGuest(); f.v8086Segments() }),
            (#line, { f in f[.guestLDTRSelector] = 0x20; f[.guestLDTRLimit] = 0xffff; f[.guestLDTRAccessRights] = 0x82 }),
            (#line, { f in f.paeGuest(); f[.guestTRAccessRights] = 0x83 }),
            (#line, { f in f.paeGuest(); f[.guestCSAccessRights] = 0xc09b; f[.guestSSAccessRights] = 1 << 16 }),   // SS unusable
            (#line, { f in f.permissive(); f.set(pin, bits([.nmiExiting, .virtualNMIs])); f.set(proc, bits(.nmiWindowExiting)) }),
            (#line, { f in   // unrestricted guest in real mode
                f.permissive(); f.set(proc2, bits(.unrestrictedGuest)); f.paeGuest()
                f[.guestCR0] = 0x30; f[.guestCR4] = 0; f[.guestIA32EFER] = 0
                f[.guestCSAccessRights] = 0x93; f[.guestCSLimit] = 0xffff; f[.guestSSLimit] = 0xffff; f[.guestSSAccessRights] = 0x93
            }),
    ] }

    func testValidVariationsPass() {
        for (line, setup) in Self.passingVariations {
            var f = Self.baseline()
            setup(&f)
            XCTAssertNil(f.check(), "variation at line \(line): \(VMEntryChecker.allFailures(f.context))", line: line)
        }
    }
}
