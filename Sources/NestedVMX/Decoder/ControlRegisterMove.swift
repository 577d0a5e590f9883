/// MOV to or from a control register (SDM Vol. 2B "MOV—Move to/from Control
/// Registers"): 0F 22 /r writes CR(reg) from GPR(r/m), 0F 20 /r reads it;
/// the r/m operand is always a register, whatever ModRM.mod says. MOV to
/// and from a debug register (0F 23 /r, 0F 21 /r) has the same form, with
/// `controlRegister` then naming the debug register.
public struct ControlRegisterMove: Equatable, Sendable {
    public var controlRegister: Int
    public var register: Int
    public var toControlRegister: Bool
    public var length: Int

    public init(controlRegister: Int, register: Int, toControlRegister: Bool, length: Int) {
        self.controlRegister = controlRegister; self.register = register
        self.toControlRegister = toControlRegister; self.length = length
    }
}

extension VMXDecoder {
    public static func decodeControlRegisterMove(_ bytes: some Collection<UInt8>, state: CPUState) -> ControlRegisterMove? {
        decodeRegisterMove(bytes, state: state, from: 0x20, to: 0x22)
    }

    /// MOV to or from a debug register (0F 23 /r, 0F 21 /r).
    public static func decodeDebugRegisterMove(_ bytes: some Collection<UInt8>, state: CPUState) -> ControlRegisterMove? {
        decodeRegisterMove(bytes, state: state, from: 0x21, to: 0x23)
    }

    static func decodeRegisterMove(_ bytes: some Collection<UInt8>, state: CPUState, from: UInt8, to: UInt8) -> ControlRegisterMove? {
        var c = Cursor(bytes: Array(bytes.prefix(maximumLength)))
        guard let (p, first) = try? readPrefixes(&c, mode64: state.mode64), first == 0x0f, !p.lock,
              let second = try? c.next(), second == from || second == to, let modrm = try? c.next() else { return nil }
        return ControlRegisterMove(controlRegister: Int((modrm >> 3) & 7) | p.rexR, register: Int(modrm & 7) | p.rexB,
                                   toControlRegister: second == to, length: c.position)
    }

    /// INVLPG m (0F 01 /7, a memory operand): its operand and length.
    public static func decodeINVLPG(_ bytes: some Collection<UInt8>, state: CPUState) -> (operand: MemoryOperand, length: Int)? {
        var c = Cursor(bytes: Array(bytes.prefix(maximumLength)))
        let mode64 = state.mode64
        guard let (p, first) = try? readPrefixes(&c, mode64: mode64), first == 0x0f, !p.lock,
              let second = try? c.next(), second == 0x01, let modrm = try? c.next(), (modrm >> 3) & 7 == 7, modrm >> 6 != 3
        else { return nil }
        guard case let .memory(m)? = try? decodeRM(modrm, &c, p: p, addressSize: addressSize(p, state: state), mode64: mode64) else { return nil }
        return (m, c.position)
    }
}

/// LMSW r/m16 (0F 01 /6) and SMSW r/m (0F 01 /4): the machine status word,
/// CR0's low bits (SDM Vol. 2A "LMSW", Vol. 2B "SMSW").
public struct MachineStatusWordAccess: Equatable, Sendable {
    public enum Operand: Equatable, Sendable { case register(Int), memory(MemoryOperand) }
    public var load: Bool
    public var operand: Operand
    /// SMSW to a register: 2, 4 or 8 bytes; 2 otherwise.
    public var operandSize: Int
    public var length: Int

    public init(load: Bool, operand: Operand, operandSize: Int, length: Int) {
        self.load = load; self.operand = operand; self.operandSize = operandSize; self.length = length
    }
}

extension VMXDecoder {
    public static func decodeMachineStatusWord(_ bytes: some Collection<UInt8>, state: CPUState) -> MachineStatusWordAccess? {
        var c = Cursor(bytes: Array(bytes.prefix(maximumLength)))
        let mode64 = state.mode64
        guard let (p, first) = try? readPrefixes(&c, mode64: mode64), first == 0x0f, !p.lock,
              let second = try? c.next(), second == 0x01, let modrm = try? c.next() else { return nil }
        let op = (modrm >> 3) & 7
        guard op == 4 || op == 6 else { return nil }
        let operand: MachineStatusWordAccess.Operand
        var size = 2
        if modrm >> 6 == 3 {
            operand = .register(Int(modrm & 7) | p.rexB)
            if op == 4 { size = mode64 && p.rexW ? 8 : (p.operandSize ? 2 : (state.cs.db || mode64 ? 4 : 2)) }
        } else {
            guard case let .memory(m)? = try? decodeRM(modrm, &c, p: p, addressSize: addressSize(p, state: state), mode64: mode64) else { return nil }
            operand = .memory(m)
        }
        return MachineStatusWordAccess(load: op == 6, operand: operand, operandSize: size, length: c.position)
    }
}
