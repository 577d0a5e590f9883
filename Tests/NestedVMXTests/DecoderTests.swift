import XCTest
@testable import NestedVMX

final class DecoderTests: XCTestCase {
    // MARK: Fixtures

    /// 64-bit mode, CPL 0, flat data segments.
    static func state64() -> CPUState {
        var s = CPUState()
        s.cr0 = 0x8000_0011; s.cr4 = 0x20; s.efer = 0x500
        s.cs = SegmentState(selector: 8, limit: 0xFFFF_FFFF, type: 0xB, l: true, g: true)
        for seg in [SegmentRegister.ds, .es, .ss, .fs, .gs] {
            s[seg] = SegmentState(selector: 0x10, limit: 0xFFFF_FFFF, type: 0x3, db: true, g: true)
        }
        return s
    }

    /// 32-bit protected mode, flat segments.
    static func state32() -> CPUState {
        var s = CPUState()
        s.cr0 = 0x11
        s.cs = SegmentState(selector: 8, limit: 0xFFFF_FFFF, type: 0xB, db: true, g: true)
        for seg in [SegmentRegister.ds, .es, .ss, .fs, .gs] {
            s[seg] = SegmentState(selector: 0x10, limit: 0xFFFF_FFFF, type: 0x3, db: true, g: true)
        }
        return s
    }

    func decode(_ bytes: [UInt8], _ state: CPUState = DecoderTests.state64(),
                file: StaticString = #filePath, line: UInt = #line) throws -> DecodedInstruction {
        switch VMXDecoder.decode(bytes, state: state) {
        case .success(let d): return d
        case .failure(let e):
            XCTFail("decode failed: \(e)", file: file, line: line)
            throw e
        }
    }

    func expectFailure(_ bytes: [UInt8], _ expected: X86Exception, _ state: CPUState = DecoderTests.state64(),
                       file: StaticString = #filePath, line: UInt = #line) {
        switch VMXDecoder.decode(bytes, state: state) {
        case .success(let d): XCTFail("expected \(expected), decoded \(d)", file: file, line: line)
        case .failure(let e): XCTAssertEqual(e, expected, file: file, line: line)
        }
    }

    func memory(_ d: DecodedInstruction, file: StaticString = #filePath, line: UInt = #line) throws -> MemoryOperand {
        try XCTUnwrap(d.memoryOperand, "expected a memory operand", file: file, line: line)
    }

    // MARK: Opcodes, 64-bit mode

    func testGroup9MemoryForms() throws {
        let cases: [([UInt8], VMXInstruction, Int)] = [
            ([0xF3, 0x0F, 0xC7, 0x30], .vmxon, 0),     // vmxon [rax]
            ([0x66, 0x0F, 0xC7, 0x33], .vmclear, 3),   // vmclear [rbx]
            ([0x0F, 0xC7, 0x31], .vmptrld, 1),         // vmptrld [rcx]
            ([0x0F, 0xC7, 0x3A], .vmptrst, 2),         // vmptrst [rdx]
        ]
        for (bytes, insn, base) in cases {
            let d = try decode(bytes)
            XCTAssertEqual(d.instruction, insn)
            XCTAssertEqual(d.length, bytes.count)
            XCTAssertEqual(d.operandSize, 64)
            XCTAssertEqual(d.addressSize, 64)
            XCTAssertNil(d.reg)
            XCTAssertEqual(d.memoryOperandSize, 8)
            XCTAssertEqual(d.rm, .memory(MemoryOperand(segment: .ds, base: base, addressSize: 64)))
        }
    }

    func testGroup9RegisterFormsAreUD() {
        expectFailure([0xF3, 0x0F, 0xC7, 0xF0], .invalidOpcode)   // vmxon with mod=11
        expectFailure([0x66, 0x0F, 0xC7, 0xF1], .invalidOpcode)
        expectFailure([0x0F, 0xC7, 0xF2], .invalidOpcode)         // rdrand edx, not VMX
        expectFailure([0x0F, 0xC7, 0xFA], .invalidOpcode)         // rdseed edx, not VMX
    }

    func testWrongMandatoryPrefixIsUD() {
        expectFailure([0xF3, 0x0F, 0xC7, 0x38], .invalidOpcode)   // F3 /7 is not VMPTRST
        expectFailure([0x66, 0x0F, 0xC7, 0x38], .invalidOpcode)
        expectFailure([0xF2, 0x0F, 0xC7, 0x30], .invalidOpcode)
        expectFailure([0x66, 0x0F, 0x78, 0xC8], .invalidOpcode)   // EXTRQ, not VMREAD
        expectFailure([0xF2, 0x0F, 0x79, 0xC8], .invalidOpcode)
        expectFailure([0x0F, 0x38, 0x80, 0x03], .invalidOpcode)   // INVEPT needs 66
        expectFailure([0xF3, 0x0F, 0x38, 0x81, 0x03], .invalidOpcode)
    }

    func testNoOperandForms() throws {
        let cases: [(UInt8, VMXInstruction)] = [(0xC1, .vmcall), (0xC2, .vmlaunch), (0xC3, .vmresume),
                                                (0xC4, .vmxoff), (0xD4, .vmfunc)]
        for (b, insn) in cases {
            let d = try decode([0x0F, 0x01, b])
            XCTAssertEqual(d.instruction, insn)
            XCTAssertEqual(d.length, 3)
            XCTAssertNil(d.rm)
            XCTAssertNil(d.reg)
            XCTAssertEqual(d.instructionInformation(), 0)
        }
        XCTAssertEqual(try decode([0x3E, 0x0F, 0x01, 0xC2]).length, 4)
    }

    func testUnknownGroup7IsUD() {
        for b: UInt8 in [0xC0, 0xC5, 0xC6, 0xC7, 0xC8, 0xD5, 0x00, 0x10] {
            expectFailure([0x0F, 0x01, b, 0, 0, 0, 0, 0], .invalidOpcode)
        }
        expectFailure([0x90], .invalidOpcode)
        expectFailure([0x0F, 0x05], .invalidOpcode)
        expectFailure([0x0F, 0x38, 0x82, 0x03], .invalidOpcode)
    }

    func testVMReadVMWriteRegisterAndMemory() throws {
        // vmread rax, rcx: r/m = rax (destination), reg = rcx (field).
        var d = try decode([0x0F, 0x78, 0xC8])
        XCTAssertEqual(d.instruction, .vmread)
        XCTAssertEqual(d.rm, .register(0))
        XCTAssertEqual(d.reg, 1)
        // vmread [rdi], rsi
        d = try decode([0x0F, 0x78, 0x37])
        XCTAssertEqual(d.rm, .memory(MemoryOperand(segment: .ds, base: 7, addressSize: 64)))
        XCTAssertEqual(d.reg, 6)
        XCTAssertEqual(d.memoryOperandSize, 8)
        // vmwrite r8, r9 (REX.R and REX.B)
        d = try decode([0x45, 0x0F, 0x79, 0xC1])
        XCTAssertEqual(d.instruction, .vmwrite)
        XCTAssertEqual(d.reg, 8)
        XCTAssertEqual(d.rm, .register(9))
        XCTAssertEqual(d.length, 4)
        // REX.W is ignored: the operand size is 64 either way.
        let w = try decode([0x48, 0x0F, 0x79, 0xC1])
        XCTAssertEqual(w.operandSize, 64)
        XCTAssertEqual(w.rm, .register(1))
        XCTAssertEqual(w.reg, 0)
    }

    func testInveptInvvpid() throws {
        // invept rax, [rbx]
        var d = try decode([0x66, 0x0F, 0x38, 0x80, 0x03])
        XCTAssertEqual(d.instruction, .invept)
        XCTAssertEqual(d.reg, 0)
        XCTAssertEqual(d.rm, .memory(MemoryOperand(segment: .ds, base: 3, addressSize: 64)))
        XCTAssertEqual(d.memoryOperandSize, 16)
        // invvpid r9, [r10+8]
        d = try decode([0x66, 0x45, 0x0F, 0x38, 0x81, 0x4A, 0x08])
        XCTAssertEqual(d.instruction, .invvpid)
        XCTAssertEqual(d.reg, 9)
        XCTAssertEqual(d.rm, .memory(MemoryOperand(segment: .ds, base: 10, displacement: 8, addressSize: 64)))
        XCTAssertEqual(d.length, 7)
        // Register descriptor operand: #UD.
        expectFailure([0x66, 0x0F, 0x38, 0x80, 0xC0], .invalidOpcode)
    }

    // MARK: ModRM / SIB / displacement

    func testRexXIndexAndSIB() throws {
        // vmptrld [rax + r11*4]
        let d = try decode([0x42, 0x0F, 0xC7, 0x34, 0x98])
        XCTAssertEqual(d.rm, .memory(MemoryOperand(segment: .ds, base: 0, index: 11, scale: 4, addressSize: 64)))
        // With REX.X, index field 100 is R12, not "none".
        let r12 = try memory(try decode([0x42, 0x0F, 0xC7, 0x34, 0x24]))
        XCTAssertEqual(r12.index, 12)
        XCTAssertEqual(r12.base, 4)
        // REX.B on a SIB base: [r13 + 0] needs mod=01; default segment DS, not SS.
        let r13 = try memory(try decode([0x41, 0x0F, 0xC7, 0x74, 0x25, 0x00]))
        XCTAssertEqual(r13.base, 13)
        XCTAssertNil(r13.index)
        XCTAssertEqual(r13.segment, .ds)
    }

    func testSIBNoBaseAndNoIndex() throws {
        // vmptrld [rcx*8 + 0x1000]: SIB base=101 with mod=00 -> disp32, no base.
        let m = try memory(try decode([0x0F, 0xC7, 0x34, 0xCD, 0x00, 0x10, 0x00, 0x00]))
        XCTAssertNil(m.base)
        XCTAssertEqual(m.index, 1)
        XCTAssertEqual(m.scale, 8)
        XCTAssertEqual(m.displacement, 0x1000)
        XCTAssertEqual(m.segment, .ds)
        // vmptrld [rsp]: index=100 (none), base rsp, default SS.
        let sp = try memory(try decode([0x0F, 0xC7, 0x34, 0x24]))
        XCTAssertNil(sp.index)
        XCTAssertEqual(sp.base, 4)
        XCTAssertEqual(sp.segment, .ss)
        // Neither base nor index: [disp32] through SIB 0x25.
        let abs = try memory(try decode([0x0F, 0xC7, 0x34, 0x25, 0x78, 0x56, 0x34, 0x12]))
        XCTAssertNil(abs.base); XCTAssertNil(abs.index); XCTAssertFalse(abs.ripRelative)
        XCTAssertEqual(abs.displacement, 0x1234_5678)
    }

    func testRipRelative() throws {
        var s = Self.state64()
        s.rip = 0xFFFF_8000_0000_1000
        let d = try decode([0x0F, 0xC7, 0x35, 0x00, 0x01, 0x00, 0x00], s)
        let m = try memory(d)
        XCTAssertTrue(m.ripRelative)
        XCTAssertNil(m.base)
        XCTAssertEqual(d.length, 7)
        XCTAssertEqual(d.effectiveAddress(m, state: s), 0xFFFF_8000_0000_1107)
        // Negative displacement; REX.B does not turn it into [r13].
        let n = try decode([0x41, 0x0F, 0xC7, 0x35, 0xF0, 0xFF, 0xFF, 0xFF], s)
        XCTAssertEqual(n.effectiveAddress(try memory(n), state: s), 0xFFFF_8000_0000_1000 + 8 - 0x10)
        // 67 prefix: EIP-relative, truncated to 32 bits.
        let e = try decode([0x67, 0x0F, 0xC7, 0x35, 0x00, 0x01, 0x00, 0x00], s)
        XCTAssertEqual(e.addressSize, 32)
        XCTAssertEqual(e.effectiveAddress(try memory(e), state: s), 0x0000_1108)
    }

    func testDisp8SignExtension() throws {
        var s = Self.state64()
        s.gprs[.rax] = 0x100
        let d = try decode([0x0F, 0xC7, 0x70, 0xF8], s)          // vmptrld [rax-8]
        let m = try memory(d)
        XCTAssertEqual(m.displacement, -8)
        XCTAssertEqual(d.effectiveAddress(m, state: s), 0xF8)
        XCTAssertEqual(d.exitQualification(state: s), 0xFFFF_FFFF_FFFF_FFF8)
    }

    func testSegmentOverrideAndStackDefault() throws {
        XCTAssertEqual(try memory(try decode([0x64, 0x0F, 0xC7, 0x30])).segment, .fs)
        let gs = try decode([0x65, 0x66, 0x0F, 0xC7, 0x30])
        XCTAssertEqual(gs.segmentOverride, .gs)
        XCTAssertEqual(gs.instruction, .vmclear)
        // [rbp+0] and [rsp] default to SS; an override wins.
        XCTAssertEqual(try memory(try decode([0x0F, 0xC7, 0x75, 0x00])).segment, .ss)
        XCTAssertEqual(try memory(try decode([0x3E, 0x0F, 0xC7, 0x75, 0x00])).segment, .ds)
        XCTAssertEqual(try memory(try decode([0x26, 0x0F, 0xC7, 0x34, 0x24])).segment, .es)
        // [r13+0]: DS.
        XCTAssertEqual(try memory(try decode([0x41, 0x0F, 0xC7, 0x75, 0x00])).segment, .ds)
    }

    func testRexFollowedByLegacyPrefixIsIgnored() throws {
        let d = try decode([0x41, 0x66, 0x0F, 0xC7, 0x30])
        XCTAssertEqual(d.instruction, .vmclear)
        XCTAssertEqual(d.rm, .memory(MemoryOperand(segment: .ds, base: 0, addressSize: 64)))
    }

    // MARK: 32-bit and 16-bit forms

    func testProtectedMode32() throws {
        let s = Self.state32()
        // mod=00 r/m=101: absolute disp32, not RIP-relative.
        let d = try decode([0x0F, 0xC7, 0x35, 0x78, 0x56, 0x34, 0x12], s)
        let m = try memory(d)
        XCTAssertFalse(m.ripRelative)
        XCTAssertNil(m.base)
        XCTAssertEqual(m.addressSize, 32)
        XCTAssertEqual(d.operandSize, 32)
        XCTAssertEqual(d.effectiveAddress(m, state: s), 0x1234_5678)
        // vmread [ebx+4], eax with 32-bit wrap.
        var s2 = s
        s2.gprs[.rbx] = 0xFFFF_FFFE
        let r = try decode([0x0F, 0x78, 0x43, 0x04], s2)
        XCTAssertEqual(r.operandSize, 32)
        XCTAssertEqual(r.memoryOperandSize, 4)
        XCTAssertEqual(r.effectiveAddress(try memory(r), state: s2), 2)
        // 0x41 is INC ECX outside 64-bit mode, so this is not a VMX instruction.
        expectFailure([0x41, 0x0F, 0xC7, 0x30], .invalidOpcode, s)
    }

    func testAddressSize16Via67() throws {
        var s = Self.state32()
        s.gprs[.rbx] = 0x1234; s.gprs[.rsi] = 0x10
        // vmptrld [bx+si+0x10]
        let d = try decode([0x67, 0x0F, 0xC7, 0x70, 0x10], s)
        let m = try memory(d)
        XCTAssertEqual(d.addressSize, 16)
        XCTAssertEqual(m.base, 3); XCTAssertEqual(m.index, 6); XCTAssertEqual(m.displacement, 0x10)
        XCTAssertEqual(m.segment, .ds)
        XCTAssertEqual(d.effectiveAddress(m, state: s), 0x1254)
        s.gprs[.rbx] = 0xFFF0; s.gprs[.rsi] = 0x20
        XCTAssertEqual(d.effectiveAddress(m, state: s), 0x20)            // wraps at 64 KiB
        // [bp+4] defaults to SS; [disp16] form.
        XCTAssertEqual(try memory(try decode([0x67, 0x0F, 0xC7, 0x76, 0x04], s)).segment, .ss)
        let direct = try decode([0x67, 0x0F, 0xC7, 0x36, 0x00, 0x80], s)
        XCTAssertNil(try memory(direct).base)
        XCTAssertEqual(direct.effectiveAddress(try memory(direct), state: s), 0x8000)
        XCTAssertEqual(direct.instructionInformation() >> 7 & 7, 0)         // 16-bit address size
    }

    // MARK: Failures

    func testLockIsUD() {
        expectFailure([0xF0, 0x0F, 0xC7, 0x30], .invalidOpcode)
        expectFailure([0xF0, 0x0F, 0x01, 0xC2], .invalidOpcode)
        expectFailure([0xF0, 0x0F, 0x78, 0xC8], .invalidOpcode)
    }

    func testOverLongIsGP() throws {
        expectFailure([UInt8](repeating: 0x66, count: 16), .generalProtection(0))
        expectFailure([UInt8](repeating: 0x3E, count: 14) + [0x0F, 0xC7, 0x30], .generalProtection(0))
        // Exactly 15 bytes is fine.
        let d = try decode([UInt8](repeating: 0x3E, count: 11) + [0xF3, 0x0F, 0xC7, 0x30])
        XCTAssertEqual(d.length, 15)
        XCTAssertEqual(d.instruction, .vmxon)
    }

    func testTruncatedIsUD() {
        expectFailure([], .invalidOpcode)
        expectFailure([0x0F, 0xC7], .invalidOpcode)
        expectFailure([0xF3, 0x0F, 0xC7, 0x34], .invalidOpcode)           // SIB missing
        expectFailure([0x0F, 0xC7, 0x35, 0x00, 0x01], .invalidOpcode)     // disp32 cut short
        expectFailure([0x66, 0x0F, 0x38], .invalidOpcode)
    }

    // MARK: Instruction information (SDM Vol. 3C 28.2.5)

    func testInstructionInformationVMReadMemory() throws {
        // vmread [rdi+rsi*2+0x10], rcx
        let d = try decode([0x0F, 0x78, 0x4C, 0x77, 0x10])
        // scaling 1 | addr 64 (2<<7) | mem (bit10=0) | DS (3<<15) | index 6 | base 7 | reg2 1
        XCTAssertEqual(d.instructionInformation(), 0x1399_8101)
        XCTAssertEqual(d.exitQualification(state: Self.state64()), 0x10)
    }

    func testInstructionInformationVMReadRegister() throws {
        // vmread r8, r9
        let d = try decode([0x45, 0x0F, 0x78, 0xC8])
        XCTAssertEqual(d.instructionInformation(), 8 << 3 | 1 << 10 | 9 << 28)
        XCTAssertEqual(d.exitQualification(state: Self.state64()), 0)
    }

    func testInstructionInformationVMPtrld() throws {
        // vmptrld [rax+rbx*8+0x10]
        let d = try decode([0x0F, 0xC7, 0x74, 0xD8, 0x10])
        XCTAssertEqual(d.instructionInformation(), 3 | 2 << 7 | 3 << 15 | 3 << 18 | 0 << 23)
        XCTAssertEqual(d.exitQualification(state: Self.state64()), 0x10)
        // invept rcx, [rip+0]: no base, no index, reg2 = 1.
        let e = try decode([0x66, 0x0F, 0x38, 0x80, 0x0D, 0, 0, 0, 0])
        XCTAssertEqual(e.instructionInformation(), 2 << 7 | 3 << 15 | 1 << 22 | 1 << 27 | 1 << 28)
        var at = Self.state64()
        at.rip = 0x10_0000
        XCTAssertEqual(e.exitQualification(state: at), 0x10_0009, "RIP-relative: the next instruction's RIP plus the displacement")
        // vmclear gs:[esp] via 67 in 64-bit mode: address size 32, segment GS, base 4.
        let c = try decode([0x65, 0x67, 0x66, 0x0F, 0xC7, 0x34, 0x24])
        XCTAssertEqual(c.instructionInformation(), 1 << 7 | 5 << 15 | 1 << 22 | 4 << 23)
    }

    // MARK: Linear addresses

    func testNonCanonicalIsGP() throws {
        var s = Self.state64()
        s.gprs[.rax] = 0x0000_8000_0000_0000
        let d = try decode([0x0F, 0xC7, 0x30], s)
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .failure(.generalProtection(0)))
        s.gprs[.rax] = 0x0000_7FFF_FFFF_FFFC                               // last byte non-canonical
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .failure(.generalProtection(0)))
        s.gprs[.rax] = 0xFFFF_8000_0000_0000
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: true), .success(0xFFFF_8000_0000_0000))
    }

    func testNonCanonicalStackIsSS() throws {
        var s = Self.state64()
        s.gprs[.rbp] = 0x1234_0000_0000_0000
        let d = try decode([0x0F, 0xC7, 0x75, 0x00], s)
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .failure(.stackFault(0)))
    }

    func testFSBaseIn64BitMode() throws {
        var s = Self.state64()
        s.fs.base = 0x7000_0000; s.ds.base = 0x5000; s.gprs[.rax] = 0x20
        let f = try decode([0x64, 0x0F, 0xC7, 0x30], s)
        XCTAssertEqual(f.linearAddress(try memory(f), state: s, size: 8, write: false), .success(0x7000_0020))
        let d = try decode([0x0F, 0xC7, 0x30], s)                          // DS base ignored
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .success(0x20))
    }

    func testLimitChecks32() throws {
        var s = Self.state32()
        s.ds.limit = 0xFFF; s.ds.base = 0x10_0000; s.ss.limit = 0xFFF
        let d = try decode([0x0F, 0xC7, 0x30], s)                          // [eax], DS
        s.gprs[.rax] = 0xFFC
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .failure(.generalProtection(0)))
        s.gprs[.rax] = 0xFF8
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .success(0x10_0FF8))
        let st = try decode([0x0F, 0xC7, 0x34, 0x24], s)                    // [esp], SS
        s.gprs[.rsp] = 0x1000
        XCTAssertEqual(st.linearAddress(try memory(st), state: s, size: 8, write: false), .failure(.stackFault(0)))
        // Base + offset wraps at 4 GiB.
        var w = Self.state32()
        w.ds.base = 0xFFFF_F000; w.gprs[.rax] = 0x2000
        XCTAssertEqual(d.linearAddress(try memory(d), state: w, size: 8, write: false), .success(0x1000))
    }

    func testExpandDown() throws {
        var s = Self.state32()
        s.ds.type = 0x7; s.ds.limit = 0xFFF                               // expand-down, writable, big
        let d = try decode([0x0F, 0xC7, 0x30], s)
        s.gprs[.rax] = 0x800
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: true), .failure(.generalProtection(0)))
        s.gprs[.rax] = 0x1000
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: true), .success(0x1000))
        s.gprs[.rax] = 0xFFFF_FFFC
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: true), .failure(.generalProtection(0)))
        s.ds.db = false; s.gprs[.rax] = 0xFFF8                              // 64 KiB upper bound
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .success(0xFFF8))
        s.gprs[.rax] = 0xFFFC
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .failure(.generalProtection(0)))
    }

    func testTypeAndNullChecks() throws {
        var s = Self.state32()
        let d = try decode([0x0F, 0xC7, 0x30], s)
        s.ds.type = 0x1                                                     // read-only data
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: true), .failure(.generalProtection(0)))
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .success(0))
        s.ds.type = 0xB                                                     // readable code
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: true), .failure(.generalProtection(0)))
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .success(0))
        s.ds.type = 0x9                                                     // execute-only code
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .failure(.generalProtection(0)))
        s.ds.type = 0x3; s.ds.unusable = true
        XCTAssertEqual(d.linearAddress(try memory(d), state: s, size: 8, write: false), .failure(.generalProtection(0)))
        s.ss.unusable = true
        let st = try decode([0x0F, 0xC7, 0x34, 0x24], s)
        XCTAssertEqual(st.linearAddress(try memory(st), state: s, size: 8, write: false), .failure(.stackFault(0)))
    }

    // MARK: Robustness

    func testRandomBytesNeverCrash() {
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x }
        // Bias toward bytes that appear in VMX encodings so many inputs get deep.
        let interesting: [UInt8] = [0x0F, 0x0F, 0xC7, 0x78, 0x79, 0x01, 0x38, 0x80, 0x81, 0x66, 0xF3, 0xF2,
                                    0xF0, 0x67, 0x64, 0x65, 0x36, 0x41, 0x4F, 0x44, 0x24, 0x25, 0x35, 0x75, 0xC2]
        let states = [Self.state64(), Self.state32(), CPUState()]
        var successes = 0
        for i in 0..<100_000 {
            let n = Int(next() % 20)
            var bytes = [UInt8]()
            for _ in 0..<n {
                let r = next()
                bytes.append(r & 1 == 0 ? interesting[Int((r >> 8) % UInt64(interesting.count))] : UInt8(truncatingIfNeeded: r >> 16))
            }
            let state = states[i % states.count]
            switch VMXDecoder.decode(bytes, state: state) {
            case .success(let d):
                successes += 1
                XCTAssertTrue((1...15).contains(d.length), "length \(d.length) for \(bytes)")
                XCTAssertLessThanOrEqual(d.length, bytes.count)
                if let m = d.memoryOperand {
                    _ = d.effectiveAddress(m, state: state)
                    _ = d.linearAddress(m, state: state, size: 8, write: true)
                }
                _ = d.instructionInformation()
            case .failure(let e):
                XCTAssertTrue(e == .invalidOpcode || e == .generalProtection(0), "\(e)")
            }
        }
        XCTAssertGreaterThan(successes, 100)
    }
}
