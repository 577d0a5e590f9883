/// Decoder for the VMX instructions and their operands (SDM Vol. 2 chapter 2:
/// legacy prefixes 2.1.1, REX 2.2.1, ModRM/SIB 2.1.5 Tables 2-1..2-3,
/// RIP-relative addressing 2.2.1.6; encodings from SDM Vol. 3C chapter 31).
///
/// The decoder decodes whenever the bytes form a VMX instruction and leaves
/// mode/privilege checks (#UD outside protected mode, in v8086 or
/// compatibility mode, CPL checks) to the semantics layer. It fails with:
/// - #UD for a LOCK prefix, an unknown opcode (including a wrong or missing
///   mandatory prefix), a register form where memory is required, and for
///   input that ends before the instruction does;
/// - #GP(0) when the instruction would be longer than 15 bytes (SDM Vol. 2 2.3.11).
public enum VMXDecoder {
    /// Architectural maximum instruction length (SDM Vol. 2 2.3.11).
    public static let maximumLength = 15

    public static func decode(_ bytes: some Collection<UInt8>, state: CPUState) -> Result<DecodedInstruction, X86Exception> {
        decode(Array(bytes.prefix(maximumLength + 1)), state: state)
    }

    /// The same for an array: no generic prefix (a tenth of an emulated
    /// VMREAD's instructions, callgrind, docs/PERFORMANCE.md).
    public static func decode(_ bytes: [UInt8], state: CPUState) -> Result<DecodedInstruction, X86Exception> {
        bytes.withUnsafeBytes { decode($0, state: state) }
    }

    /// The same for bytes in place (an emulation failure's, which KVM
    /// reports inline): nothing is allocated.
    public static func decode(_ bytes: UnsafeRawBufferPointer, state: CPUState) -> Result<DecodedInstruction, X86Exception> {
        var cursor = Cursor(bytes: bytes)
        do {
            return .success(try decode(&cursor, state: state))
        } catch {
            return .failure(error.exception)
        }
    }

    // MARK: - Implementation

    struct DecodeError: Error { var exception: X86Exception }

    /// Reads bytes, enforcing the 15-byte limit before running out of input.
    /// The first 16 bytes (15 and one past the limit) are kept inline.
    struct Cursor {
        private var storage: (UInt64, UInt64) = (0, 0)
        let count: Int
        var position = 0

        init(bytes: UnsafeRawBufferPointer) {
            count = min(bytes.count, VMXDecoder.maximumLength + 1)
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix(count))) }
        }

        init(bytes: [UInt8]) {
            self = bytes.withUnsafeBytes { Cursor(bytes: $0) }
        }

        mutating func next() throws(DecodeError) -> UInt8 {
            // A 16th byte makes the instruction over-long whatever follows.
            guard position < VMXDecoder.maximumLength else { throw DecodeError(exception: .generalProtection(0)) }
            guard position < count else { throw DecodeError(exception: .invalidOpcode) }
            defer { position += 1 }
            return withUnsafeBytes(of: storage) { $0[position] }
        }
        mutating func littleEndian(_ count: Int) throws(DecodeError) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<count { v |= UInt64(try next()) << (8 * i) }
            return v
        }
    }

    struct Prefixes {
        var lock = false
        var operandSize = false      // 66
        var addressSize = false      // 67
        /// The last of F2/F3 seen (F2/F3 take precedence over 66 as mandatory prefix).
        var repeatPrefix: UInt8?
        var segment: SegmentRegister?
        var rex: UInt8 = 0           // 0 = none; else 0x40...0x4F
        var rexW: Bool { rex & 8 != 0 }
        var rexR: Int { rex & 4 != 0 ? 8 : 0 }
        var rexX: Int { rex & 2 != 0 ? 8 : 0 }
        var rexB: Int { rex & 1 != 0 ? 8 : 0 }

        /// The mandatory-prefix selector of SDM Vol. 2 2.1.2 / 3.1.1.1:
        /// 0xF2/0xF3 if present, else 0x66 if present, else 0 ("NP").
        var mandatory: UInt8 { repeatPrefix ?? (operandSize ? 0x66 : 0) }
    }

    static func decode(_ c: inout Cursor, state: CPUState) throws(DecodeError) -> DecodedInstruction {
        let mode64 = state.mode64
        // Default sizes (SDM Vol. 1 3.6 and Vol. 2 Table 2-4/3-3): 64-bit mode
        // addresses are 64-bit (32 with 67); otherwise CS.D selects 32 or 16
        // (real and v8086 mode code segments have D = 0), and 67 toggles.
        let defaultAddressSize = mode64 ? 64 : (state.cs.db ? 32 : 16)

        // Legacy prefixes and REX (SDM Vol. 2 2.1.1, 2.2.1). A REX prefix
        // must immediately precede the opcode; one followed by a legacy
        // prefix is ignored.
        let (p, opcode) = try readPrefixes(&c, mode64: mode64)
        // Every VMX opcode starts with the 0F escape.
        guard opcode == 0x0F else { throw DecodeError(exception: .invalidOpcode) }
        // LOCK with any VMX instruction is #UD (SDM Vol. 2 2.1.1, Vol. 3C 31.3).
        // Checked after decoding the opcode bytes so that truncation is still
        // reported consistently; either way the result is #UD.
        let addressSize: Int
        if mode64 { addressSize = p.addressSize ? 32 : 64 } else {
            addressSize = p.addressSize ? (defaultAddressSize == 32 ? 16 : 32) : defaultAddressSize
        }
        let operandSize = mode64 ? 64 : 32

        func make(_ insn: VMXInstruction, rm: Operand?, reg: Int?) -> DecodedInstruction {
            DecodedInstruction(instruction: insn, length: c.position, operandSize: operandSize,
                               addressSize: addressSize, rm: rm, reg: insn.hasRegOperand ? reg : nil,
                               segmentOverride: p.segment)
        }

        let op2 = try c.next()
        switch op2 {
        case 0x01:
            // Group 7 register forms: 0F 01 C1/C2/C3/C4/D4. Prefixes other than
            // LOCK are accepted and ignored (the SDM lists no mandatory prefix).
            let modrm = try c.next()
            let insn: VMXInstruction
            switch modrm {
            case 0xC1: insn = .vmcall
            case 0xC2: insn = .vmlaunch
            case 0xC3: insn = .vmresume
            case 0xC4: insn = .vmxoff
            case 0xD4: insn = .vmfunc
            default: throw DecodeError(exception: .invalidOpcode)
            }
            if p.lock { throw DecodeError(exception: .invalidOpcode) }
            return make(insn, rm: nil, reg: nil)

        case 0xC7:
            // Group 9: /6 VMPTRLD (NP), VMCLEAR (66), VMXON (F3); /7 VMPTRST (NP).
            let modrm = try c.next()
            let regField = Int((modrm >> 3) & 7)
            let insn: VMXInstruction
            switch (regField, p.mandatory) {
            case (6, 0xF3): insn = .vmxon
            case (6, 0x66): insn = .vmclear
            case (6, 0): insn = .vmptrld
            case (7, 0): insn = .vmptrst
            default: throw DecodeError(exception: .invalidOpcode)
            }
            let rm = try decodeRM(modrm, &c, p: p, addressSize: addressSize, mode64: mode64)
            return try finish(insn, rm: rm, reg: nil, p: p, make: make)

        case 0x78, 0x79:
            // VMREAD r/m, r (NP 0F 78 /r); VMWRITE r, r/m (NP 0F 79 /r).
            guard p.mandatory == 0 else { throw DecodeError(exception: .invalidOpcode) }
            let modrm = try c.next()
            let rm = try decodeRM(modrm, &c, p: p, addressSize: addressSize, mode64: mode64)
            let reg = Int((modrm >> 3) & 7) | (mode64 ? p.rexR : 0)
            return try finish(op2 == 0x78 ? .vmread : .vmwrite, rm: rm, reg: reg, p: p, make: make)

        case 0x38:
            // INVEPT (66 0F 38 80 /r), INVVPID (66 0F 38 81 /r).
            let op3 = try c.next()
            guard op3 == 0x80 || op3 == 0x81 else { throw DecodeError(exception: .invalidOpcode) }
            guard p.mandatory == 0x66 else { throw DecodeError(exception: .invalidOpcode) }
            let modrm = try c.next()
            let rm = try decodeRM(modrm, &c, p: p, addressSize: addressSize, mode64: mode64)
            let reg = Int((modrm >> 3) & 7) | (mode64 ? p.rexR : 0)
            return try finish(op3 == 0x80 ? .invept : .invvpid, rm: rm, reg: reg, p: p, make: make)

        default:
            throw DecodeError(exception: .invalidOpcode)
        }
    }

    static func finish(_ insn: VMXInstruction, rm: Operand, reg: Int?, p: Prefixes,
                       make: (VMXInstruction, Operand?, Int?) -> DecodedInstruction) throws(DecodeError) -> DecodedInstruction {
        if p.lock { throw DecodeError(exception: .invalidOpcode) }
        if insn.requiresMemoryOperand, case .register = rm { throw DecodeError(exception: .invalidOpcode) }
        return make(insn, rm, reg)
    }

    /// Legacy prefixes and REX, up to the first opcode byte.
    static func readPrefixes(_ c: inout Cursor, mode64: Bool) throws(DecodeError) -> (Prefixes, UInt8) {
        var p = Prefixes()
        while true {
            let b = try c.next()
            if p.rex != 0, isLegacyPrefix(b) { p.rex = 0 }
            switch b {
            case 0xF0: p.lock = true
            case 0xF2, 0xF3: p.repeatPrefix = b
            case 0x66: p.operandSize = true
            case 0x67: p.addressSize = true
            case 0x26: p.segment = .es
            case 0x2E: p.segment = .cs
            case 0x36: p.segment = .ss
            case 0x3E: p.segment = .ds
            case 0x64: p.segment = .fs
            case 0x65: p.segment = .gs
            case 0x40...0x4F where mode64: p.rex = b
            default: return (p, b)
            }
        }
    }

    static func isLegacyPrefix(_ b: UInt8) -> Bool {
        switch b {
        case 0xF0, 0xF2, 0xF3, 0x66, 0x67, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65: true
        default: false
        }
    }

    /// Decodes the r/m operand of `modrm` with its SIB and displacement.
    static func decodeRM(_ modrm: UInt8, _ c: inout Cursor, p: Prefixes, addressSize: Int,
                         mode64: Bool) throws(DecodeError) -> Operand {
        let mod = modrm >> 6
        let rmField = Int(modrm & 7)
        let rexB = mode64 ? p.rexB : 0
        let rexX = mode64 ? p.rexX : 0
        if mod == 3 { return .register(rmField | rexB) }

        if addressSize == 16 {
            // SDM Vol. 2 Table 2-1: 16-bit addressing forms.
            let pairs: [(Int?, Int?)] = [(3, 6), (3, 7), (5, 6), (5, 7), (6, nil), (7, nil), (5, nil), (3, nil)]
            var (base, index) = pairs[rmField]
            var disp: Int64 = 0
            switch mod {
            case 0 where rmField == 6:
                base = nil
                disp = Int64(Int16(truncatingIfNeeded: try c.littleEndian(2)))
            case 1: disp = Int64(Int8(truncatingIfNeeded: try c.littleEndian(1)))
            case 2: disp = Int64(Int16(truncatingIfNeeded: try c.littleEndian(2)))
            default: break
            }
            // BP-based forms default to SS (SDM Vol. 1 3.7.4 / Vol. 2 Table 2-1 notes).
            let seg = p.segment ?? (base == 5 ? .ss : .ds)
            return .memory(MemoryOperand(segment: seg, base: base, index: index, scale: 1,
                                         displacement: disp, ripRelative: false, addressSize: 16))
        }

        // 32/64-bit addressing (SDM Vol. 2 Tables 2-2, 2-3; 2.2.1.2 and 2.2.1.6).
        var base: Int? = nil
        var index: Int? = nil
        var scale: UInt8 = 1
        var ripRelative = false
        var dispBytes = mod == 1 ? 1 : (mod == 2 ? 4 : 0)
        if rmField == 4 {
            let sib = try c.next()
            scale = UInt8(1) << (sib >> 6)
            let idx = Int((sib >> 3) & 7) | rexX
            if idx != 4 { index = idx }          // index=100 without REX.X: none
            let b = Int(sib & 7)
            if b == 5 && mod == 0 {
                dispBytes = 4                     // [index*scale + disp32], no base
            } else {
                base = b | rexB
            }
        } else if rmField == 5 && mod == 0 {
            dispBytes = 4
            ripRelative = mode64                  // 64-bit: RIP-relative; else disp32 absolute
        } else {
            base = rmField | rexB
        }
        var disp: Int64 = 0
        if dispBytes == 1 {
            disp = Int64(Int8(truncatingIfNeeded: try c.littleEndian(1)))
        } else if dispBytes == 4 {
            disp = Int64(Int32(truncatingIfNeeded: try c.littleEndian(4)))
        }
        if index == nil { scale = 1 }
        // rSP and rBP bases default to SS; R12/R13 do not (SDM Vol. 1 3.7.4).
        let seg = p.segment ?? ((base == 4 || base == 5) ? .ss : .ds)
        return .memory(MemoryOperand(segment: seg, base: base, index: index, scale: scale,
                                     displacement: disp, ripRelative: ripRelative, addressSize: addressSize))
    }
}
