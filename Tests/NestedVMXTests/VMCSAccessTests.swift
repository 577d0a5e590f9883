import XCTest
@testable import NestedVMX
import VMXArch

/// VMREAD and VMWRITE (SDM Vol. 3C 31.3 "VMREAD", "VMWRITE"; field encodings
/// 25.11.2 and Appendix B).
final class VMCSAccessTests: XCTestCase {
    typealias L = TestLayout

    /// A value with distinct bytes in every position, varied per field.
    static func pattern(_ i: Int) -> UInt64 { 0x8877_6655_4433_2211 &+ UInt64(i) &* 0x0101_0101_0101_0101 }

    /// Every writable field round-trips with its width (16-bit keeps 15:0,
    /// 32-bit keeps 31:0, 64-bit and natural width keep 63:0 in 64-bit mode).
    func testEveryFieldRoundTrips64() {
        var m = VMXMachine()
        m.enterWithVMCS()
        for (i, field) in VMCSField.allFields.enumerated() where !field.isReadOnly && m.vmx.capabilities.supports(field) {
            let value = Self.pattern(i)
            let before = m.cpu
            m.cpu.gprs[.rax] = UInt64(field.rawValue)
            m.cpu.gprs[.rbx] = value
            let e = m.run(Bytes.vmwriteReg)
            assertRetired(e, .succeed, before: before, machine: m, length: 3)
            XCTAssertEqual(e.field, field)
            XCTAssertEqual(m.vmread(field), value & field.width.valueMask, field.name)
        }
        // All still there after a write-back and reload (each in its own slot).
        XCTAssertEqual(m.vmclear(L.vmcsA), .succeed)
        XCTAssertEqual(m.vmptrld(L.vmcsA), .succeed)
        for (i, field) in VMCSField.allFields.enumerated() where !field.isReadOnly && m.vmx.capabilities.supports(field) {
            XCTAssertEqual(m.vmread(field), Self.pattern(i) & field.width.valueMask, field.name)
        }
    }

    /// CR3-target values exist only up to the number IA32_VMX_MISC[24:16]
    /// reports (SDM 25.6.7, A.6): with 0 reported, VMREAD and VMWRITE of
    /// CR3_TARGET_VALUE0-3 fail with error 12 (unsupported component); with
    /// 2 reported, values 0 and 1 work and 2 and 3 still fail. Terrapin
    /// reports 4.
    func testCR3TargetValuesBeyondIA32VMXMISCAreUnsupported() {
        var m = VMXMachine()
        XCTAssertEqual(m.vmx.capabilities.cr3TargetValues, 4)
        m.vmx.capabilities.misc &= ~(0x1ff << 16)
        m.enterWithVMCS()
        let values: [VMCSField] = [.cr3TargetValue0, .cr3TargetValue1, .cr3TargetValue2, .cr3TargetValue3]
        for field in values {
            XCTAssertEqual(m.vmwrite(field, 0x1000), .failValid(12), field.name)
            XCTAssertNil(m.vmread(field), field.name)
        }
        m.vmx.capabilities.misc |= 2 << 16
        for (n, field) in values.enumerated() {
            XCTAssertEqual(m.vmwrite(field, 0x1000), n < 2 ? .succeed : .failValid(12), field.name)
        }
    }

    /// Whatever L1 wrote into the region itself, VMPTRLD loads each field
    /// at its width: a VMREAD never returns more bits than the field has
    /// (Appendix B), and a 32-bit field such as the VM-entry instruction
    /// length cannot carry bit 63 into the monitor. Seeded random regions.
    func testRegionContentsAreCutToTheFieldWidthOnLoad() {
        var seed: UInt64 = 0x9e37_79b9_7f4a_7c15
        func next() -> UInt64 { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; return seed }
        for round in 0..<20 {
            var m = VMXMachine()
            m.enterVMX()
            for offset in stride(from: UInt64(8), to: 4096, by: 8) {
                XCTAssertTrue(m.memory.store(round == 0 ? UInt64.max : next(), at: L.vmcsB + offset))
            }
            XCTAssertTrue(m.memory.store(VMXCapabilities.revisionID, at: L.vmcsB))
            XCTAssertEqual(m.vmptrld(L.vmcsB), .succeed)
            for field in VMCSField.allFields where m.vmx.capabilities.supports(field) {
                guard let value = m.vmread(field) else { return XCTFail("VMREAD \(field.name)") }
                XCTAssertEqual(value & ~field.width.valueMask, 0, "\(field.name) in round \(round)")
            }
        }
        var m = VMXMachine()
        m.enterVMX()
        XCTAssertTrue(m.memory.store(UInt64(0x8000_0000_0000_0002), at: L.vmcsB + VMCS12Layout.offset(ofSlot: VMCS12Layout.slot(of: .entryInstructionLength)!)))
        XCTAssertTrue(m.memory.store(VMXCapabilities.revisionID, at: L.vmcsB))
        XCTAssertEqual(m.vmptrld(L.vmcsB), .succeed)
        XCTAssertEqual(m.vmread(.entryInstructionLength), 2)
    }

    /// The slot table gives every encoding of the low 16 bits and a sample of
    /// wider ones the slot its definition says: a field of `allFields` has
    /// its index there, in full access and, for a 64-bit field, in high
    /// access; every other encoding has none.
    func testSlotTableAgreesWithTheFieldList() {
        let position = Dictionary(uniqueKeysWithValues: VMCSField.allFields.enumerated().map { ($1.rawValue, $0) })
        var found = 0
        let wide: [UInt32] = [1 << 15, 1 << 16, 1 << 31, 0x0001_0000 | 0x0800, 0xffff_ffff]
        for raw in Array(UInt32(0)..<0x1_0000) + wide.flatMap({ w in VMCSField.allFields.map { $0.rawValue | w } }) {
            let field = VMCSField(rawValue: raw)
            var expected: Int? = nil
            if raw & VMCSField.reservedBitsMask == 0, let p = position[raw & ~1], raw & 1 == 0 || field.width == .bits64 {
                expected = p
            }
            if expected != nil { found += 1 }
            XCTAssertEqual(VMCS12Layout.slot(of: field), expected, "encoding 0x\(String(raw, radix: 16))")
        }
        XCTAssertEqual(found, VMCSField.allFields.count + VMCSField.allFields.filter { $0.width == .bits64 }.count)
    }

    /// High access (encoding | 1) of every 64-bit field reads and writes bits 63:32.
    func testHighAccessOfEvery64BitField() {
        var m = VMXMachine()
        m.enterWithVMCS()
        let wide = VMCSField.allFields.filter { $0.width == .bits64 }
        XCTAssertFalse(wide.isEmpty)
        for (i, field) in wide.enumerated() where !field.isReadOnly {
            let high = UInt64(field.rawValue | 1)
            XCTAssertEqual(m.vmwrite(field, Self.pattern(i)), .succeed)
            XCTAssertEqual(m.vmread(high), Self.pattern(i) >> 32, field.name)
            // VMWRITE high: bits 31:0 of the source go to bits 63:32; bits 31:0 of the field stay.
            XCTAssertEqual(m.vmwrite(high, 0xdead_beef_cafe_f00d), .succeed, field.name)
            XCTAssertEqual(m.vmread(field), 0xcafe_f00d_0000_0000 | Self.pattern(i) & 0xffff_ffff, field.name)
            XCTAssertEqual(m.vmread(high), 0xcafe_f00d, field.name)
        }
        for field in wide where field.isReadOnly {
            XCTAssertEqual(m.vmwrite(UInt64(field.rawValue | 1), 1), .failValid(13), field.name)
            XCTAssertEqual(m.vmread(UInt64(field.rawValue | 1)), 0, field.name)
        }
    }

    /// Outside 64-bit mode the operands are 32 bits: VMREAD gives bits 31:0,
    /// VMWRITE of a wider field clears its high bits, and bits 63:32 of the
    /// field register are not part of the encoding.
    func testProtectedMode32BitOperands() {
        var m = VMXMachine()
        m.enterWithVMCS()
        XCTAssertEqual(m.vmwrite(VMCSField.guestRIP, 0xffff_ffff_1234_5678), .succeed)
        XCTAssertEqual(m.vmwrite(VMCSField.tscOffset, 0xaaaa_bbbb_cccc_dddd), .succeed)
        XCTAssertEqual(m.vmwrite(VMCSField.guestESSelector, 0x1234), .succeed)
        let vmx = m.vmx
        m = VMXMachine(.protected32, memory: m.memory)
        m.vmx = vmx
        XCTAssertEqual(m.vmread(.guestRIP), 0x1234_5678)
        XCTAssertEqual(m.vmread(.tscOffset), 0xcccc_dddd)
        XCTAssertEqual(m.vmread(UInt64(VMCSField.tscOffset.rawValue | 1)), 0xaaaa_bbbb)
        XCTAssertEqual(m.vmread(.guestESSelector), 0x1234)
        XCTAssertEqual(m.vmread(0xffff_ffff_0000_0000 | UInt64(VMCSField.guestRIP.rawValue)), 0x1234_5678,
                       "register operands are 32 bits outside 64-bit mode")

        let before = m.cpu
        m.cpu.gprs[.rax] = UInt64(VMCSField.guestRIP.rawValue)
        m.cpu.gprs[.rbx] = 0x7777_7777_dead_beef
        let e = m.run(Bytes.vmwriteReg)
        assertRetired(e, .succeed, before: before, machine: m, length: 3)
        XCTAssertEqual(m.vmwrite(VMCSField.tscOffset, 0x0102_0304), .succeed)
        XCTAssertEqual(m.vmwrite(UInt64(VMCSField.ioBitmapA.rawValue | 1), 0x55), .succeed)
        XCTAssertEqual(m.vmx.current?.read(.guestRIP), 0xdead_beef, "high half cleared")
        XCTAssertEqual(m.vmx.current?.read(.tscOffset), 0x0102_0304, "64-bit full write clears bits 63:32")
        XCTAssertEqual(m.vmx.current?.read(.ioBitmapA), 0x55 << 32)

        // Memory operands are 4 bytes.
        _ = m.memory.store(UInt64(0x9999_9999_9999_9999), at: L.data)
        m.cpu.gprs[.rax] = UInt64(VMCSField.tscOffset.rawValue)
        m.cpu.gprs[.rbx] = L.data
        expectRetire(&m, Bytes.vmreadMem, .succeed)
        XCTAssertEqual(m.memory.load(UInt64.self, at: L.data), 0x9999_9999_0102_0304)
        _ = m.memory.store(UInt64(0x1111_2222_3333_4444), at: L.data)
        m.cpu.gprs[.rax] = UInt64(VMCSField.guestRSP.rawValue)
        expectRetire(&m, Bytes.vmwriteMem, .succeed)
        XCTAssertEqual(m.vmx.current?.read(.guestRSP), 0x3333_4444)
    }

    /// "ELSIF source operand does not correspond to any VMCS field THEN
    /// VMfailValid(VMREAD/VMWRITE from/to unsupported VMCS component)" (12).
    func testUnsupportedEncodings() {
        var m = VMXMachine()
        m.enterWithVMCS()
        let unknown = VMCSField(width: .natural, kind: .guestState, index: 0x1ff)
        XCTAssertFalse(VMCSField.allFields.contains(unknown))
        let encodings: [(UInt64, String)] = [
            (UInt64(VMCSField.guestRIP.rawValue | 1 << 12), "reserved bit 12"),
            (UInt64(VMCSField.guestRIP.rawValue | 1 << 15), "bit 15"),
            (UInt64(VMCSField.guestRIP.rawValue | 1 << 31), "bit 31"),
            (UInt64(VMCSField.guestRIP.rawValue | 1), "high access of natural width"),
            (UInt64(VMCSField.guestESSelector.rawValue | 1), "high access of 16-bit"),
            (UInt64(VMCSField.vmInstructionError.rawValue | 1), "high access of 32-bit"),
            (1 << 32 | UInt64(VMCSField.guestRIP.rawValue), "register bits 63:32 in 64-bit mode"),
            (UInt64(unknown.rawValue), "unknown index"),
            (0xffff_ffff, "all ones"),
        ]
        for (encoding, what) in encodings {
            let before = m.cpu
            XCTAssertNil(m.vmread(encoding), what)
            XCTAssertEqual(m.cpu.gprs[.rbx], 0x5A5A_5A5A_5A5A_5A5A, "destination unchanged: \(what)")
            XCTAssertEqual(m.cpu.rflags & (Flag.cf | Flag.zf), Flag.zf, what)
            XCTAssertEqual(m.instructionError, 12, what)
            XCTAssertEqual(m.cpu.rip, before.rip + 3)
            let cache = m.vmx.current?.values
            XCTAssertEqual(m.vmwrite(encoding, 0x42), .failValid(12), what)
            XCTAssertEqual(m.instructionError, 12, what)
            var expected = cache
            expected?[VMCS12Layout.slot(of: .vmInstructionError)!] = 12
            XCTAssertEqual(m.vmx.current?.values, expected, "VMWRITE wrote nothing: \(what)")
        }
    }

    /// Exit-information fields are read-only (IA32_VMX_MISC bit 29 clear):
    /// VMWRITE fails with 13; VMREAD reads them.
    func testReadOnlyFields() {
        let mem = TestLayout.makeMemory()
        let readOnly = VMCSField.allFields.filter(\.isReadOnly)
        XCTAssertTrue(readOnly.contains(.exitReason))
        XCTAssertTrue(readOnly.allSatisfy { $0.kind == .exitInformation })
        for (i, f) in readOnly.enumerated() {
            _ = mem.store(Self.pattern(i) & f.width.valueMask, at: L.vmcsA + VMCS12Layout.offset(ofSlot: VMCS12Layout.slot(of: f)!))
        }
        var m = VMXMachine(memory: mem)
        m.enterWithVMCS()
        XCTAssertEqual(m.vmx.capabilities.misc & 1 << 29, 0)
        var failedWrites = 0
        for (i, f) in readOnly.enumerated() {
            // The error field holds 13 once a VMWRITE has failed.
            let expected = f == .vmInstructionError && failedWrites > 0 ? 13 : Self.pattern(i) & f.width.valueMask
            XCTAssertEqual(m.vmread(f), expected, f.name)
            let before = m.cpu
            m.cpu.gprs[.rax] = UInt64(f.rawValue)
            m.cpu.gprs[.rbx] = 1
            let e = m.run(Bytes.vmwriteReg)
            assertRetired(e, .failValid(13), before: before, machine: m, length: 3)
            failedWrites += 1
            if f != .vmInstructionError {
                XCTAssertEqual(m.vmread(f), Self.pattern(i) & f.width.valueMask, "unchanged: \(f.name)")
            }
        }
    }

    func testNoCurrentVMCSFailsInvalid() {
        var m = VMXMachine()
        m.enterVMX()
        m.cpu.gprs[.rax] = UInt64(VMCSField.guestRIP.rawValue)
        expectRetire(&m, Bytes.vmreadReg, .failInvalid)
        expectRetire(&m, Bytes.vmwriteReg, .failInvalid)
        // Even with an unsupported encoding: the pointer check comes first.
        m.cpu.gprs[.rax] = 0xffff_ffff
        expectRetire(&m, Bytes.vmreadReg, .failInvalid)
        expectRetire(&m, Bytes.vmwriteReg, .failInvalid)
    }

    func testMemoryOperands() {
        var m = VMXMachine()
        m.enterWithVMCS()
        _ = m.memory.store(UInt64(0x0123_4567_89ab_cdef), at: L.data)
        m.cpu.gprs[.rax] = UInt64(VMCSField.hostRIP.rawValue)
        m.cpu.gprs[.rbx] = L.data
        expectRetire(&m, Bytes.vmwriteMem, .succeed)
        XCTAssertEqual(m.vmx.current?.read(.hostRIP), 0x0123_4567_89ab_cdef)
        m.cpu.gprs[.rbx] = L.data + 0x40
        expectRetire(&m, Bytes.vmreadMem, .succeed)
        XCTAssertEqual(m.memory.load(UInt64.self, at: L.data + 0x40), 0x0123_4567_89ab_cdef)
        // A 16-bit field is zero-extended to the 64-bit operand.
        XCTAssertEqual(m.vmwrite(VMCSField.hostCSSelector, 0xffff_ffff_ffff_0008), .succeed)
        _ = m.memory.store(UInt64.max, at: L.data + 0x80)
        m.cpu.gprs[.rax] = UInt64(VMCSField.hostCSSelector.rawValue)
        m.cpu.gprs[.rbx] = L.data + 0x80
        expectRetire(&m, Bytes.vmreadMem, .succeed)
        XCTAssertEqual(m.memory.load(UInt64.self, at: L.data + 0x80), 8)
        // A VMREAD to memory mapped to non-RAM is dropped; a VMWRITE from it reads all ones.
        m.cpu.gprs[.rbx] = L.notRAMLinear
        expectRetire(&m, Bytes.vmreadMem, .succeed)
        m.cpu.gprs[.rax] = UInt64(VMCSField.guestRSP.rawValue)
        expectRetire(&m, Bytes.vmwriteMem, .succeed)
        XCTAssertEqual(m.vmx.current?.read(.guestRSP), ~0)
    }

    /// #PF on the memory operand: RFLAGS, RIP and the VMCS unchanged, CR2 = the
    /// linear address, error code W for the VMREAD store (SDM Vol. 3A 4.7).
    func testUnmappedMemoryOperandPageFaults() {
        var m = VMXMachine()
        m.enterWithVMCS()
        XCTAssertEqual(m.vmwrite(VMCSField.guestRIP, 0x77), .succeed)
        m.cpu.rflags |= Flag.cf | Flag.zf | Flag.of
        m.cpu.gprs[.rax] = UInt64(VMCSField.guestRIP.rawValue)
        m.cpu.gprs[.rbx] = L.unmapped + 0x10
        expectFault(&m, Bytes.vmreadMem, .pageFault(errorCode: 2, address: L.unmapped + 0x10))
        expectFault(&m, Bytes.vmwriteMem, .pageFault(errorCode: 0, address: L.unmapped + 0x10))
        XCTAssertEqual(m.vmx.current?.read(.guestRIP), 0x77)
        // Straddling the mapped/unmapped boundary.
        m.cpu.gprs[.rbx] = L.unmapped - 2
        expectFault(&m, Bytes.vmreadMem, .pageFault(errorCode: 2, address: L.unmapped))
        expectFault(&m, Bytes.vmwriteMem, .pageFault(errorCode: 0, address: L.unmapped))
        // A non-canonical address is #GP(0) (SDM 31.3 64-bit mode exceptions).
        m.cpu.gprs[.rbx] = 0x0000_8000_0000_0000
        expectFault(&m, Bytes.vmreadMem, .generalProtection(0))
        expectFault(&m, Bytes.vmwriteMem, .generalProtection(0))
    }

    func testCPL3AndOutsideVMX() {
        var m = VMXMachine()
        m.cpu.gprs[.rax] = UInt64(VMCSField.guestRIP.rawValue)
        expectFault(&m, Bytes.vmreadReg, .invalidOpcode)
        expectFault(&m, Bytes.vmwriteReg, .invalidOpcode)
        m.enterWithVMCS()
        m.cpu.setCPL3()
        m.cpu.gprs[.rax] = UInt64(VMCSField.guestRIP.rawValue)
        expectFault(&m, Bytes.vmreadReg, .generalProtection(0))
        expectFault(&m, Bytes.vmwriteReg, .generalProtection(0))
    }

    /// The VMCS_ENUM index is the highest index VMREAD accepts (SDM A.9),
    /// and VMREAD accepts every field, the four CR3-target values included
    /// (IA32_VMX_MISC reports 4).
    func testVMCSEnumMatchesVMREAD() {
        var m = VMXMachine()
        m.enterWithVMCS()
        let highest = UInt16((m.vmx.capabilities.vmcsEnum >> 1) & 0x1ff)
        let accepted = VMCSField.allFields.filter { m.vmread($0) != nil }
        XCTAssertEqual(accepted.count, VMCSField.allFields.count)
        XCTAssertEqual(accepted.map(\.index).max(), highest)
    }

    /// A resolved field reads and writes what `read` and `write` of its
    /// field do, VMWRITE's width rules included, for every full field.
    func testResolvedFieldsAccessWhatTheirFieldsDo() {
        var byField = VMCS12(address: 0x1000), byResolved = VMCS12(address: 0x1000)
        for (i, field) in VMCSField.allFields.enumerated() where !field.isHighAccess {
            let value = 0xfedc_ba98_7654_3210 &* UInt64(i + 3)
            byField.write(field, value)
            byResolved[ResolvedField(field)] = value
            XCTAssertEqual(byResolved[ResolvedField(field)], byField.read(field), "\(field)")
        }
        XCTAssertEqual(byResolved, byField)
    }
}
