import XCTest
@testable import NestedVMX
import VMXArch

/// The VMX instructions against the pseudo-code of SDM Vol. 3C 31.3, with the
/// RFLAGS conventions of 31.2 and the error numbers of 31.4 (Table 31-1).
final class VMXInstructionTests: XCTestCase {
    typealias L = TestLayout

    // MARK: VMXON (SDM 31.3 "VMXON")

    /// "IF (register operand) or (CR0.PE = 0) or (CR4.VMXE = 0) or (RFLAGS.VM = 1)
    /// or (IA32_EFER.LMA = 1 and CS.L = 0) THEN #UD".
    func testVMXONUndefinedOpcodeCases() {
        var m = VMXMachine()
        m.vmx.vmxe = false
        m.cpu.gprs[.rax] = L.operand
        _ = m.memory.store(L.vmxonRegion, at: L.operand)
        expectFault(&m, Bytes.vmxon, .invalidOpcode)

        for mode in [CPUMode.real, .virtual8086, .compatibility] {
            var m = VMXMachine(mode)
            m.cpu.gprs[.rax] = L.operand
            _ = m.memory.store(L.vmxonRegion, at: L.operand)
            expectFault(&m, Bytes.vmxon, .invalidOpcode)
            XCTAssertFalse(m.vmx.inVMXOperation, "\(mode)")
        }
    }

    /// Outside VMX operation: "IF (CPL > 0) or ... (CR0/CR4 not supported) or
    /// (IA32_FEATURE_CONTROL lock clear) or (outside SMX and bit 2 clear) THEN #GP(0)".
    func testVMXONGeneralProtectionCases() {
        func attempt(_ adjust: (inout VMXMachine) -> Void, _ what: String, line: UInt = #line) {
            var m = VMXMachine()
            adjust(&m)
            m.cpu.gprs[.rax] = L.operand
            _ = m.memory.store(L.vmxonRegion, at: L.operand)
            expectFault(&m, Bytes.vmxon, .generalProtection(0), line: line)
            XCTAssertFalse(m.vmx.inVMXOperation, what, line: line)
        }
        attempt({ $0.cpu.setCPL3() }, "CPL 3")
        attempt({ $0.cpu.cr0 &= ~(1 << 5) }, "CR0.NE clear (IA32_VMX_CR0_FIXED0 bit 5)")
        attempt({ $0.cpu.cr4 |= 1 << 30 }, "CR4 bit 30 outside CR4_FIXED1")
        attempt({ $0.vmx.featureControl = .vmxOutsideSMX }, "feature control unlocked")
        attempt({ $0.vmx.featureControl = .lock }, "VMX outside SMX clear")
        attempt({ $0.vmx = VMXState(capabilities: .terrapin(), lockedByFirmware: false); $0.vmx.vmxe = true }, "BIOS left it unlocked")
    }

    /// "IF addr is not 4KB-aligned or addr sets any bits beyond the physical-address
    /// width THEN VMfailInvalid; ... IF rev[30:0] != revision or rev[31] = 1 THEN VMfailInvalid".
    func testVMXONFailInvalid() {
        let bad = VMXMachine().memory
        _ = bad.store(VMXCapabilities.revisionID + 1, at: 0x14000)
        _ = bad.store(VMXCapabilities.revisionID | 1 << 31, at: 0x15000)
        let pointers: [(UInt64, String)] = [
            (L.vmxonRegion + 8, "misaligned"), (L.vmxonRegion | 1 << 46, "beyond MAXPHYADDR"),
            (1 << 63, "bit 63"), (L.notRAMPhysical, "not RAM"), (0x14000, "wrong revision"),
            (0x15000, "revision bit 31"), (0x16000, "zero revision"),
        ]
        for (pointer, what) in pointers {
            var m = VMXMachine(memory: bad)
            m.cpu.rflags |= Flag.zf | Flag.sf
            _ = m.memory.store(pointer, at: L.operand)
            m.cpu.gprs[.rax] = L.operand
            expectRetire(&m, Bytes.vmxon, .failInvalid)
            XCTAssertFalse(m.vmx.inVMXOperation, what)
            XCTAssertEqual(m.vmx.vmxonPointer, VMXState.invalidPointer, what)
        }
    }

    func testVMXONSucceedsAndClearsArithmeticFlags() {
        var m = VMXMachine()
        m.cpu.rflags |= Flag.arithmetic | 1 << 9     // IF kept
        _ = m.memory.store(L.vmxonRegion, at: L.operand)
        m.cpu.gprs[.rax] = L.operand
        expectRetire(&m, Bytes.vmxon, .succeed)
        XCTAssertEqual(m.cpu.rflags, 0x2 | 1 << 9)
        XCTAssertTrue(m.vmx.inVMXOperation)
        XCTAssertEqual(m.vmx.vmxonPointer, L.vmxonRegion)
        XCTAssertNil(m.vmx.current, "current-VMCS pointer := FFFFFFFF_FFFFFFFFH")
    }

    /// VMXON is allowed in 32-bit protected mode (PAE paging here); RIP wraps
    /// at 32 bits outside 64-bit mode (SDM Vol. 1 3.5).
    func testVMXONIn32BitProtectedModeAndRIPWrap() {
        var m = VMXMachine(.protected32)
        m.enterWithVMCS()
        m.cpu.rip = 0xffff_fffe
        let before = m.cpu
        let e = m.run(Bytes.vmcall)
        XCTAssertEqual(e.result, .failValid(1))
        XCTAssertEqual(m.cpu.rip, 1)
        XCTAssertEqual(m.cpu.rflags & Flag.arithmetic, Flag.zf)
        XCTAssertEqual(m.instructionError, 1)
        XCTAssertEqual(m.cpu.gprs, before.gprs)
    }

    /// In VMX root operation: CPL > 0 -> #GP, else VMfail(15).
    func testVMXONInRoot() {
        var m = VMXMachine()
        m.enterVMX()
        _ = m.memory.store(L.vmxonRegion, at: L.operand)
        expectRetire(&m, Bytes.vmxon, .failInvalid)
        XCTAssertEqual(m.vmptrld(L.vmcsA), .succeed)
        expectRetire(&m, Bytes.vmxon, .failValid(15))
        XCTAssertEqual(m.vmx.current?.address, L.vmcsA)
        m.cpu.setCPL3()
        expectFault(&m, Bytes.vmxon, .generalProtection(0))
    }

    /// #PF on the m64 operand: CR2 (faultAddress) = the linear address,
    /// error code P=0, W=0, U/S=0 (SDM Vol. 3A 4.7); nothing changes.
    func testVMXONPageFault() {
        var m = VMXMachine()
        m.cpu.gprs[.rax] = L.unmapped + 0x18
        m.cpu.rflags |= Flag.cf
        expectFault(&m, Bytes.vmxon, .pageFault(errorCode: 0, address: L.unmapped + 0x18))
        XCTAssertFalse(m.vmx.inVMXOperation)
        // An operand straddling into the unmapped page faults at the first unmapped byte.
        m.cpu.gprs[.rax] = L.unmapped - 4
        expectFault(&m, Bytes.vmxon, .pageFault(errorCode: 0, address: L.unmapped))
    }

    // MARK: VMXOFF (SDM 31.3 "VMXOFF")

    func testVMXOFF() {
        var m = VMXMachine()
        expectFault(&m, Bytes.vmxoff, .invalidOpcode)              // not in VMX operation
        m.enterWithVMCS()
        m.cpu.setCPL3()
        expectFault(&m, Bytes.vmxoff, .generalProtection(0))
        m.cpu = .make()
        XCTAssertEqual(m.vmwrite(VMCSField.guestRIP, 0x1234_5678_9abc), .succeed)
        XCTAssertEqual(m.stored(.guestRIP, in: L.vmcsA), 0, "VMWRITE only changes the cache")
        expectRetire(&m, Bytes.vmxoff, .succeed)
        XCTAssertFalse(m.vmx.inVMXOperation)
        XCTAssertNil(m.vmx.current)
        XCTAssertEqual(m.vmx.vmxonPointer, VMXState.invalidPointer)
        XCTAssertEqual(m.stored(.guestRIP, in: L.vmcsA), 0x1234_5678_9abc, "cache written back (SDM 25.11.1)")
        expectFault(&m, Bytes.vmxoff, .invalidOpcode)
        // VMXON again: no current VMCS.
        m.enterVMX()
        XCTAssertNil(m.vmx.current)
    }

    // MARK: VMCLEAR (SDM 31.3 "VMCLEAR")

    func testVMCLEARErrors() {
        for withCurrent in [false, true] {
            var m = VMXMachine()
            if withCurrent { m.enterWithVMCS() } else { m.enterVMX() }
            for (pointer, error) in [(L.vmcsB + 0x800, 2), (L.vmcsB | 1 << 46, 2), (L.notRAMPhysical, 2),
                                     (L.vmxonRegion, 3)] as [(UInt64, UInt32)] {
                _ = m.memory.store(pointer, at: L.operand)
                expectRetire(&m, Bytes.vmclear, withCurrent ? .failValid(error) : .failInvalid)
                XCTAssertEqual(m.vmx.current?.address, withCurrent ? L.vmcsA : nil)
            }
        }
        var m = VMXMachine()
        expectFault(&m, Bytes.vmclear, .invalidOpcode)
        m.enterVMX()
        m.cpu.setCPL3()
        expectFault(&m, Bytes.vmclear, .generalProtection(0))
    }

    func testVMCLEAROfCurrentWritesBackAndInvalidates() throws {
        var m = VMXMachine()
        _ = m.memory.store(UInt32(1), at: L.vmcsA + VMCS12Layout.launchStateOffset)
        m.enterWithVMCS()
        XCTAssertEqual(m.vmx.current?.launched, true)
        let writes: [(VMCSField, UInt64)] = [(.guestRIP, 0xffff_8000_0000_1234), (.virtualProcessorID, 0x77),
                                             (.tscOffset, 0x1122_3344_5566_7788), (.guestCR0, 0x8000_0031)]
        for (f, v) in writes { XCTAssertEqual(m.vmwrite(f, v), .succeed, f.name) }
        _ = m.memory.store(L.vmcsA, at: L.operand)
        m.cpu.gprs[.rax] = L.operand
        expectRetire(&m, Bytes.vmclear, .succeed)
        XCTAssertNil(m.vmx.current)
        XCTAssertEqual(m.vmx.currentPointer, VMXState.invalidPointer)
        for (f, v) in writes {
            let slot = try XCTUnwrap(VMCSField.allFields.firstIndex(of: f))
            XCTAssertEqual(m.memory.load(UInt64.self, at: L.vmcsA + 16 + 8 * UInt64(slot)), v, f.name)
        }
        XCTAssertEqual(m.launchWord(L.vmcsA), 0, "launch state := clear")
        XCTAssertEqual(m.memory.load(UInt32.self, at: L.vmcsA), VMXCapabilities.revisionID, "revision untouched")
        // With the pointer invalid, VMREAD fails invalid and VMPTRST stores all ones.
        XCTAssertNil(m.vmread(.guestRIP))
        XCTAssertEqual(m.cpu.rflags & (Flag.cf | Flag.zf), Flag.cf)
        _ = m.memory.store(UInt64(0), at: L.operand)
        m.cpu.gprs[.rax] = L.operand
        expectRetire(&m, Bytes.vmptrst, .succeed)
        XCTAssertEqual(m.memory.load(UInt64.self, at: L.operand), ~0)
    }

    func testVMCLEAROfNonCurrentClearsLaunchState() {
        var m = VMXMachine()
        _ = m.memory.store(UInt32(1), at: L.vmcsB + VMCS12Layout.launchStateOffset)
        _ = m.memory.store(UInt64(0xabcd), at: L.vmcsB + VMCS12Layout.offset(ofSlot: 3))
        m.enterWithVMCS(L.vmcsA)
        _ = m.memory.store(L.vmcsB, at: L.operand)
        expectRetire(&m, Bytes.vmclear, .succeed)
        XCTAssertEqual(m.launchWord(L.vmcsB), 0)
        XCTAssertEqual(m.memory.load(UInt64.self, at: L.vmcsB + VMCS12Layout.offset(ofSlot: 3)), 0xabcd, "fields kept")
        XCTAssertEqual(m.vmx.current?.address, L.vmcsA, "current VMCS unaffected")
        // The cleared VMCS loads as clear: VMLAUNCH is allowed, VMRESUME fails with 5.
        XCTAssertEqual(m.vmptrld(L.vmcsB), .succeed)
        XCTAssertEqual(m.vmx.current?.launched, false)
    }

    // MARK: VMPTRLD (SDM 31.3 "VMPTRLD")

    func testVMPTRLDErrors() {
        let mem = TestLayout.makeMemory()
        _ = mem.store(VMXCapabilities.revisionID ^ 1, at: 0x14000)
        _ = mem.store(VMXCapabilities.revisionID | 1 << 31, at: 0x15000)
        for withCurrent in [false, true] {
            var m = VMXMachine(memory: mem)
            if withCurrent { m.enterWithVMCS(L.vmcsC) } else { m.enterVMX() }
            let cases: [(UInt64, UInt32)] = [
                (L.vmcsA + 1, 9), (L.vmcsA | 1 << 46, 9), (1 << 63, 9), (L.notRAMPhysical, 9),
                (L.vmxonRegion, 10), (0x14000, 11), (0x15000, 11), (0x16000, 11),
            ]
            for (pointer, error) in cases {
                _ = m.memory.store(pointer, at: L.operand)
                expectRetire(&m, Bytes.vmptrld, withCurrent ? .failValid(error) : .failInvalid)
                XCTAssertEqual(m.vmx.current?.address, withCurrent ? L.vmcsC : nil, "pointer 0x\(String(pointer, radix: 16))")
            }
        }
    }

    func testVMPTRLDSucceedsAndSwitchingWritesBack() {
        var m = VMXMachine()
        m.enterVMX()
        _ = m.memory.store(L.vmcsA, at: L.operand)
        expectRetire(&m, Bytes.vmptrld, .succeed)
        XCTAssertEqual(m.vmx.current?.address, L.vmcsA)
        XCTAssertEqual(m.vmwrite(VMCSField.guestRSP, 0xfeed_f00d), .succeed)
        XCTAssertEqual(m.stored(.guestRSP, in: L.vmcsA), 0)
        XCTAssertEqual(m.vmptrld(L.vmcsB), .succeed)
        XCTAssertEqual(m.vmx.current?.address, L.vmcsB)
        XCTAssertEqual(m.stored(.guestRSP, in: L.vmcsA), 0xfeed_f00d, "the first VMCS was written back")
        XCTAssertEqual(m.vmread(.guestRSP), 0, "the second VMCS has its own fields")
        XCTAssertEqual(m.vmptrld(L.vmcsA), .succeed)
        XCTAssertEqual(m.vmread(.guestRSP), 0xfeed_f00d)
    }

    func testVMPTRLDOfCurrentKeepsCache() {
        var m = VMXMachine()
        m.enterWithVMCS()
        XCTAssertEqual(m.vmwrite(VMCSField.guestRIP, 0x1111), .succeed)
        // L1 scribbles on the region of the current VMCS (SDM 25.11.1: undefined; we keep the cache).
        _ = m.memory.store(UInt64(0x2222), at: L.vmcsA + VMCS12Layout.offset(ofSlot: VMCS12Layout.slot(of: .guestRIP)!))
        XCTAssertEqual(m.vmptrld(L.vmcsA), .succeed)
        XCTAssertEqual(m.vmread(.guestRIP), 0x1111)
    }

    func testVMPTRLDPageFaultChangesNothing() {
        var m = VMXMachine()
        m.enterWithVMCS()
        m.cpu.gprs[.rax] = L.unmapped + 0x1000
        expectFault(&m, Bytes.vmptrld, .pageFault(errorCode: 0, address: L.unmapped + 0x1000))
        XCTAssertEqual(m.vmx.current?.address, L.vmcsA)
    }

    // MARK: VMPTRST (SDM 31.3 "VMPTRST")

    func testVMPTRST() {
        var m = VMXMachine()
        expectFault(&m, Bytes.vmptrst, .invalidOpcode)
        m.enterVMX()
        m.cpu.gprs[.rax] = L.data
        expectRetire(&m, Bytes.vmptrst, .succeed)
        XCTAssertEqual(m.memory.load(UInt64.self, at: L.data), ~0, "FFFFFFFF_FFFFFFFFH without a current VMCS")
        XCTAssertEqual(m.vmptrld(L.vmcsB), .succeed)
        m.cpu.gprs[.rax] = L.data
        expectRetire(&m, Bytes.vmptrst, .succeed)
        XCTAssertEqual(m.memory.load(UInt64.self, at: L.data), L.vmcsB)
        // Write to an unmapped page: #PF with W=1 (SDM Vol. 3A 4.7), memory untouched.
        m.cpu.gprs[.rax] = L.unmapped + 8
        expectFault(&m, Bytes.vmptrst, .pageFault(errorCode: 2, address: L.unmapped + 8))
        // Straddling: nothing of the mapped part is written.
        _ = m.memory.store(UInt64(0x0102_0304_0506_0708), at: L.unmapped - 8)
        m.cpu.gprs[.rax] = L.unmapped - 4
        expectFault(&m, Bytes.vmptrst, .pageFault(errorCode: 2, address: L.unmapped))
        XCTAssertEqual(m.memory.load(UInt64.self, at: L.unmapped - 8), 0x0102_0304_0506_0708)
        m.cpu.setCPL3()
        expectFault(&m, Bytes.vmptrst, .generalProtection(0))
    }

    // MARK: VMLAUNCH / VMRESUME (SDM 31.3), up to the launch-state checks

    func testVMLAUNCHAndVMRESUMEChecks() {
        var m = VMXMachine()
        expectFault(&m, Bytes.vmlaunch, .invalidOpcode)
        expectFault(&m, Bytes.vmresume, .invalidOpcode)
        m.enterVMX()
        expectRetire(&m, Bytes.vmlaunch, .failInvalid)
        expectRetire(&m, Bytes.vmresume, .failInvalid)

        XCTAssertEqual(m.vmptrld(L.vmcsA), .succeed)                  // clear
        m.cpu.blockingByMovSS = true
        expectRetire(&m, Bytes.vmlaunch, .failValid(26))
        expectRetire(&m, Bytes.vmresume, .failValid(26))
        m.cpu.blockingByMovSS = false
        expectRetire(&m, Bytes.vmresume, .failValid(5))
        // Past the launch-state checks come the entry checks (27.2): an all-zero
        // VMCS lacks the default-1 control bits, so VMfailValid(7).
        expectRetire(&m, Bytes.vmlaunch, .failValid(7))

        _ = m.memory.store(UInt32(1), at: L.vmcsB + VMCS12Layout.launchStateOffset)
        XCTAssertEqual(m.vmptrld(L.vmcsB), .succeed)                  // launched
        XCTAssertEqual(m.vmx.current?.launched, true)
        expectRetire(&m, Bytes.vmlaunch, .failValid(4))
        expectRetire(&m, Bytes.vmresume, .failValid(7))

        m.cpu.setCPL3()
        expectFault(&m, Bytes.vmlaunch, .generalProtection(0))
        expectFault(&m, Bytes.vmresume, .generalProtection(0))
    }

    // MARK: VMCALL, VMFUNC

    func testVMCALLInRoot() {
        var m = VMXMachine()
        expectFault(&m, Bytes.vmcall, .invalidOpcode)
        m.enterVMX()
        expectRetire(&m, Bytes.vmcall, .failInvalid)
        XCTAssertEqual(m.vmptrld(L.vmcsA), .succeed)
        expectRetire(&m, Bytes.vmcall, .failValid(1))
        m.cpu.setCPL3()
        expectFault(&m, Bytes.vmcall, .generalProtection(0))
        m.cpu = .make(.compatibility)
        expectFault(&m, Bytes.vmcall, .invalidOpcode)
    }

    func testVMFUNCIsUndefinedInRoot() {
        var m = VMXMachine()
        expectFault(&m, Bytes.vmfunc, .invalidOpcode)
        m.enterWithVMCS()
        expectFault(&m, Bytes.vmfunc, .invalidOpcode)
    }

    /// Every VMX instruction except VMFUNC raises #GP(0) at CPL 3 in VMX root
    /// operation (and VMXON outside it).
    func testCPL3GeneralProtection() {
        let all: [[UInt8]] = [Bytes.vmxon, Bytes.vmptrld, Bytes.vmclear, Bytes.vmptrst, Bytes.vmreadReg, Bytes.vmreadMem,
                              Bytes.vmwriteReg, Bytes.vmwriteMem, Bytes.vmlaunch, Bytes.vmresume, Bytes.vmxoff,
                              Bytes.vmcall, Bytes.invept, Bytes.invvpid]
        for bytes in all {
            var m = VMXMachine()
            m.enterWithVMCS()
            m.cpu.setCPL3()
            m.cpu.gprs[.rax] = L.operand
            m.cpu.gprs[.rbx] = L.data
            expectFault(&m, bytes, .generalProtection(0))
        }
        var m = VMXMachine()
        m.cpu.setCPL3()
        expectFault(&m, Bytes.vmxon, .generalProtection(0))
    }

    /// Outside VMX operation every instruction but VMXON is #UD.
    func testUndefinedOutsideVMXOperation() {
        for bytes in [Bytes.vmptrld, Bytes.vmclear, Bytes.vmptrst, Bytes.vmreadReg, Bytes.vmwriteReg, Bytes.vmlaunch,
                      Bytes.vmresume, Bytes.vmxoff, Bytes.vmcall, Bytes.invept, Bytes.invvpid] {
            var m = VMXMachine()
            m.cpu.setCPL3()           // #UD takes priority over #GP
            expectFault(&m, bytes, .invalidOpcode)
        }
    }

    /// In VMX operation, real-address, virtual-8086 and compatibility mode are #UD.
    func testUndefinedInWrongModes() {
        for mode in [CPUMode.compatibility, .virtual8086, .real] {
            for bytes in [Bytes.vmptrld, Bytes.vmclear, Bytes.vmptrst, Bytes.vmreadReg, Bytes.vmwriteReg, Bytes.vmlaunch,
                          Bytes.vmresume, Bytes.vmxoff, Bytes.invept, Bytes.invvpid, Bytes.vmxon] {
                var m = VMXMachine()
                m.enterWithVMCS()
                m.cpu = .make(mode)
                m.cpu.gprs[.rax] = L.operand
                m.cpu.gprs[.rbx] = L.data
                expectFault(&m, bytes, .invalidOpcode)
            }
        }
    }

    // MARK: INVEPT (SDM 31.3 "INVEPT"; EPTP checks SDM 27.2.1.1)

    func invept(_ m: inout VMXMachine, type: UInt64, eptp: UInt64, high: UInt64 = 0,
                file: StaticString = #filePath, line: UInt = #line) -> VMXExecution {
        _ = m.memory.store(eptp, at: L.data)
        _ = m.memory.store(high, at: L.data + 8)
        m.cpu.gprs[.rax] = type
        m.cpu.gprs[.rbx] = L.data
        let before = m.cpu
        let e = m.run(Bytes.invept, file: file, line: line)
        if case .fault = e.result { return e }
        assertRetired(e, e.result, before: before, machine: m, length: Bytes.invept.count, file: file, line: line)
        return e
    }

    func testINVEPT() {
        var m = VMXMachine()
        m.enterWithVMCS()
        let good: UInt64 = 0x5000 | 3 << 3 | 6
        for type in [0, 3, 4, 7, 8, 1 << 32 | 1, ~0] as [UInt64] {
            let e = invept(&m, type: type, eptp: good)
            XCTAssertEqual(e.result, .failValid(28), "type \(type)")
            XCTAssertNil(e.invalidation)
        }
        var e = invept(&m, type: 1, eptp: good)
        XCTAssertEqual(e.result, .succeed)
        XCTAssertEqual(e.invalidation, .eptSingleContext(eptp: good))
        e = invept(&m, type: 1, eptp: 0x5000 | 3 << 3 | 0)           // UC is advertised (EPT_VPID_CAP bit 8)
        XCTAssertEqual(e.result, .succeed)
        let bad: [(UInt64, String)] = [
            (0x5000 | 3 << 3 | 1, "memory type WC"), (0x5000 | 3 << 3 | 7, "memory type 7"),
            (0x5000 | 4 << 3 | 6, "5-level walk not advertised"), (0x5000 | 0 << 3 | 6, "1-level walk"),
            (0x5000 | 1 << 7 | 3 << 3 | 6, "bit 7"),
            (0x5000 | 1 << 11 | 3 << 3 | 6, "bit 11"), (1 << 46 | 3 << 3 | 6, "bit 46 = MAXPHYADDR"),
            (1 << 63 | 3 << 3 | 6, "bit 63"),
        ]
        for (eptp, what) in bad {
            let e = invept(&m, type: 1, eptp: eptp)
            XCTAssertEqual(e.result, .failValid(28), what)
            XCTAssertNil(e.invalidation, what)
        }
        e = invept(&m, type: 2, eptp: ~0)                          // all-context ignores the EPTP
        XCTAssertEqual(e.result, .succeed)
        XCTAssertEqual(e.invalidation, .eptAllContexts)
        // The descriptor is read only for supported types: an unmapped descriptor faults then.
        m.cpu.gprs[.rax] = 2
        m.cpu.gprs[.rbx] = L.unmapped + 0x100
        expectFault(&m, Bytes.invept, .pageFault(errorCode: 0, address: L.unmapped + 0x100))
        m.cpu.gprs[.rax] = 5
        expectRetire(&m, Bytes.invept, .failValid(28))
        // Without a current VMCS: VMfailInvalid.
        var n = VMXMachine()
        n.enterVMX()
        XCTAssertEqual(invept(&n, type: 0, eptp: good).result, .failInvalid)
        XCTAssertEqual(invept(&n, type: 1, eptp: good).result, .succeed)
    }

    /// Outside 64-bit mode the type register is 32 bits (SDM 31.3 INVEPT).
    func testINVEPTTypeIs32BitsOutside64BitMode() {
        var m = VMXMachine()
        m.enterWithVMCS()
        m.cpu = .make(.protected32)
        let e = invept(&m, type: 1 << 32 | 2, eptp: 0)
        XCTAssertEqual(e.result, .succeed)
        XCTAssertEqual(e.invalidation, .eptAllContexts)
    }

    // MARK: INVVPID (SDM 31.3 "INVVPID")

    func invvpid(_ m: inout VMXMachine, type: UInt64, vpid: UInt64, address: UInt64 = 0,
                 file: StaticString = #filePath, line: UInt = #line) -> VMXExecution {
        _ = m.memory.store(vpid, at: L.data)
        _ = m.memory.store(address, at: L.data + 8)
        m.cpu.gprs[.rax] = type
        m.cpu.gprs[.rbx] = L.data
        let before = m.cpu
        let e = m.run(Bytes.invvpid, file: file, line: line)
        if case .fault = e.result { return e }
        assertRetired(e, e.result, before: before, machine: m, length: Bytes.invvpid.count, file: file, line: line)
        return e
    }

    func testINVVPID() {
        var m = VMXMachine()
        m.enterWithVMCS()
        // Type 0: individual address; VPID 0 and non-canonical addresses fail.
        var e = invvpid(&m, type: 0, vpid: 1, address: 0xffff_8000_0000_1000)
        XCTAssertEqual(e.result, .succeed)
        XCTAssertEqual(e.invalidation, .vpidIndividualAddress(vpid: 1, address: 0xffff_8000_0000_1000))
        XCTAssertEqual(invvpid(&m, type: 0, vpid: 0, address: 0x1000).result, .failValid(28))
        XCTAssertEqual(invvpid(&m, type: 0, vpid: 1, address: 0x0000_8000_0000_0000).result, .failValid(28))
        XCTAssertEqual(invvpid(&m, type: 0, vpid: 1, address: 0xffff_7fff_ffff_ffff).result, .failValid(28))
        // Types 1 and 3: VPID 0 fails; the address is ignored.
        e = invvpid(&m, type: 1, vpid: 0xffff, address: 0x8000_0000_0000_0000)
        XCTAssertEqual(e.result, .succeed)
        XCTAssertEqual(e.invalidation, .vpidSingleContext(vpid: 0xffff, retainGlobals: false))
        XCTAssertEqual(invvpid(&m, type: 1, vpid: 0).result, .failValid(28))
        e = invvpid(&m, type: 3, vpid: 7)
        XCTAssertEqual(e.invalidation, .vpidSingleContext(vpid: 7, retainGlobals: true))
        XCTAssertEqual(invvpid(&m, type: 3, vpid: 0).result, .failValid(28))
        // Type 2: any VPID, including 0.
        e = invvpid(&m, type: 2, vpid: 0, address: 0x8000_0000_0000_0000)
        XCTAssertEqual(e.result, .succeed)
        XCTAssertEqual(e.invalidation, .vpidAllContexts)
        // INVVPID_DESC[63:16] != 0 fails for every type.
        for type in 0...3 as ClosedRange<UInt64> {
            XCTAssertEqual(invvpid(&m, type: type, vpid: 1 << 16 | 1).result, .failValid(28), "type \(type)")
            XCTAssertEqual(invvpid(&m, type: type, vpid: 1 << 63 | 1).result, .failValid(28), "type \(type)")
        }
        for type in [4, 7, 8, 1 << 32, ~0] as [UInt64] {
            e = invvpid(&m, type: type, vpid: 1)
            XCTAssertEqual(e.result, .failValid(28))
            XCTAssertNil(e.invalidation)
        }
        m.cpu.gprs[.rax] = 2
        m.cpu.gprs[.rbx] = L.unmapped
        expectFault(&m, Bytes.invvpid, .pageFault(errorCode: 0, address: L.unmapped))
    }
}
