import VMXArch

/// The operands of the sensitive instructions whose exits carry
/// instruction information (SDM Vol. 3C 28.2.5): the descriptor-table
/// instructions, INVPCID, RDRAND and RDSEED.

/// LGDT, LIDT, SGDT, SIDT (0F 01 /2, /3, /0, /1, memory) and LLDT, LTR,
/// SLDT, STR (0F 00 /2, /3, /0, /1).
public struct DescriptorTableAccess: Equatable, Sendable {
    public enum Table: Equatable, Sendable {
        case gdtr, idtr, ldtr, tr
        /// LDTR and TR take a selector (exit 47); GDTR and IDTR a base and limit (46).
        public var isSelector: Bool { self == .ldtr || self == .tr }
    }
    public enum Operand: Equatable, Sendable { case register(Int), memory(MemoryOperand) }
    public var table: Table
    public var load: Bool
    public var operand: Operand
    /// 16 or 32: bit 11 of the GDTR/IDTR information (64-bit mode reports 32).
    public var operandSize: Int
    public var length: Int

    public init(table: Table, load: Bool, operand: Operand, operandSize: Int, length: Int) {
        self.table = table; self.load = load; self.operand = operand; self.operandSize = operandSize; self.length = length
    }

    /// Exit 46 for GDTR and IDTR, 47 for LDTR and TR.
    public var exitReason: VMXExitReason { table.isSelector ? .ldtrTRAccess : .gdtrIDTRAccess }

    /// The exit qualification: a memory operand's displacement (28.2.1),
    /// 0 for a register operand. `state` is L2 at the instruction.
    public func qualification(state: CPUState) -> UInt64 {
        if case let .memory(m) = operand { return m.exitQualification(state: state, instructionLength: length) }
        return 0
    }

    /// Tables 28-10 and 28-11: the memory fields as for VMX instructions,
    /// operand size in bit 11 (GDTR/IDTR), reg1 in 6:3 and mem/reg in 10
    /// (LDTR/TR), the instruction identity in 29:28 (SGDT/SIDT/LGDT/LIDT,
    /// or SLDT/STR/LLDT/LTR, in that order).
    public var instructionInformation: UInt32 {
        var info: UInt32
        switch operand {
        case let .memory(m): info = DecodedInstruction.memoryInformation(m)
        case let .register(r): info = UInt32(r & 0xf) << 3 | 1 << 10
        }
        if !table.isSelector, operandSize == 32 { info |= 1 << 11 }
        let second: UInt32 = table == .idtr || table == .tr ? 1 : 0
        info |= ((load ? 2 : 0) + second) << 28
        return info
    }
}

/// INVPCID r, m128 (66 0F 38 82 /r): the type register and the descriptor.
public struct INVPCIDOperands: Equatable, Sendable {
    public var typeRegister: Int
    public var descriptor: MemoryOperand
    public var length: Int

    /// Table 28-13 (as INVEPT and INVVPID): the memory fields and reg2 in 31:28.
    public var instructionInformation: UInt32 {
        DecodedInstruction.memoryInformation(descriptor) | UInt32(typeRegister & 0xf) << 28
    }
    /// The displacement (28.2.1). `state` is L2 at the instruction.
    public func qualification(state: CPUState) -> UInt64 {
        descriptor.exitQualification(state: state, instructionLength: length)
    }
}

/// RDRAND r (0F C7 /6) and RDSEED r (0F C7 /7), register forms.
public struct RandomNumberOperand: Equatable, Sendable {
    public var register: Int
    /// 2, 4 or 8 bytes.
    public var operandSize: Int
    public var length: Int

    /// Table 28-12: the destination register in 6:3, the operand size in
    /// 12:11 (0 = 16, 1 = 32, 2 = 64 bits).
    public var instructionInformation: UInt32 {
        UInt32(register & 0xf) << 3 | UInt32(operandSize == 2 ? 0 : operandSize == 4 ? 1 : 2) << 11
    }
}

extension VMXDecoder {
    /// The address size of an instruction with prefixes `p` (Vol. 1 3.6):
    /// 64 in 64-bit mode (32 with 67), else CS.D's, toggled by 67.
    static func addressSize(_ p: Prefixes, state: CPUState) -> Int {
        if state.mode64 { return p.addressSize ? 32 : 64 }
        let d = state.cs.db ? 32 : 16
        return p.addressSize ? (d == 32 ? 16 : 32) : d
    }

    /// A 32-bit operand size without REX.W (Vol. 1 3.6): the default (32 in
    /// 64-bit mode and with CS.D, else 16), toggled by 66.
    static func operand32(_ p: Prefixes, state: CPUState) -> Bool {
        (state.mode64 || state.cs.db) != p.operandSize
    }

    public static func decodeDescriptorTable(_ bytes: some Collection<UInt8>, state: CPUState) -> DescriptorTableAccess? {
        var c = Cursor(bytes: Array(bytes.prefix(maximumLength)))
        let mode64 = state.mode64
        guard let (p, first) = try? readPrefixes(&c, mode64: mode64), first == 0x0f, !p.lock,
              let second = try? c.next(), second == 0x00 || second == 0x01, let modrm = try? c.next() else { return nil }
        let op = Int((modrm >> 3) & 7)
        guard op < 4, second == 0x00 || modrm >> 6 != 3,
              let rm = try? decodeRM(modrm, &c, p: p, addressSize: addressSize(p, state: state), mode64: mode64) else { return nil }
        let tables: [DescriptorTableAccess.Table] = second == 0x01 ? [.gdtr, .idtr, .gdtr, .idtr] : [.ldtr, .tr, .ldtr, .tr]
        let operand: DescriptorTableAccess.Operand
        switch rm {
        case let .register(r): operand = .register(r)
        case let .memory(m): operand = .memory(m)
        }
        let size = mode64 || operand32(p, state: state) ? 32 : 16
        return DescriptorTableAccess(table: tables[op], load: op >= 2, operand: operand, operandSize: size, length: c.position)
    }

    public static func decodeINVPCID(_ bytes: some Collection<UInt8>, state: CPUState) -> INVPCIDOperands? {
        var c = Cursor(bytes: Array(bytes.prefix(maximumLength)))
        let mode64 = state.mode64
        guard let (p, first) = try? readPrefixes(&c, mode64: mode64), first == 0x0f, !p.lock, p.mandatory == 0x66,
              (try? c.next()) == 0x38, (try? c.next()) == 0x82, let modrm = try? c.next(),
              case let .memory(m)? = try? decodeRM(modrm, &c, p: p, addressSize: addressSize(p, state: state), mode64: mode64)
        else { return nil }
        return INVPCIDOperands(typeRegister: Int((modrm >> 3) & 7) | (mode64 ? p.rexR : 0), descriptor: m, length: c.position)
    }

    public static func decodeRandomNumber(_ bytes: some Collection<UInt8>, state: CPUState) -> RandomNumberOperand? {
        var c = Cursor(bytes: Array(bytes.prefix(maximumLength)))
        let mode64 = state.mode64
        guard let (p, first) = try? readPrefixes(&c, mode64: mode64), first == 0x0f, !p.lock, p.repeatPrefix == nil,
              (try? c.next()) == 0xc7, let modrm = try? c.next(), modrm >> 6 == 3, (modrm >> 3) & 7 >= 6 else { return nil }
        let size = mode64 && p.rexW ? 8 : (operand32(p, state: state) ? 4 : 2)
        return RandomNumberOperand(register: Int(modrm & 7) | (mode64 ? p.rexB : 0), operandSize: size, length: c.position)
    }
}
