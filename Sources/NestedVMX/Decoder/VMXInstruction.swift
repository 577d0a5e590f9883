import VMXArch

/// The VMX instructions the decoder recognises (SDM Vol. 3C chapter 31).
public enum VMXInstruction: Sendable, Equatable {
    case vmxon, vmxoff, vmclear, vmptrld, vmptrst, vmread, vmwrite, vmlaunch, vmresume, vmcall, vmfunc, invept, invvpid

    /// True for the forms whose r/m operand must be memory (SDM Vol. 3C 31.3:
    /// "m64" / "m128" operands; a register form is a different, here undefined, opcode).
    public var requiresMemoryOperand: Bool {
        switch self {
        case .vmxon, .vmclear, .vmptrld, .vmptrst, .invept, .invvpid: true
        default: false
        }
    }

    /// True for the instructions with a ModRM reg operand (VMREAD/VMWRITE
    /// field encoding, INVEPT/INVVPID type register).
    public var hasRegOperand: Bool {
        switch self {
        case .vmread, .vmwrite, .invept, .invvpid: true
        default: false
        }
    }
}

/// A decoded memory operand (SDM Vol. 2 2.1.5; Vol. 3A 3.7.5).
public struct MemoryOperand: Equatable, Sendable {
    /// The effective segment: the override prefix if any, else the default
    /// (SS for rSP/rBP bases and the BP forms of 16-bit addressing, else DS).
    public var segment: SegmentRegister
    /// Base register (0-15), nil when there is none (disp-only, RIP-relative).
    public var base: Int?
    /// Index register (0-15), nil when there is none.
    public var index: Int?
    /// 1, 2, 4 or 8.
    public var scale: UInt8
    /// The displacement, sign-extended to 64 bits (0 when there is none).
    public var displacement: Int64
    /// RIP-relative (64-bit mode, mod=00 r/m=101): relative to the next instruction.
    public var ripRelative: Bool
    /// 16, 32 or 64.
    public var addressSize: Int

    public init(segment: SegmentRegister, base: Int? = nil, index: Int? = nil, scale: UInt8 = 1,
                displacement: Int64 = 0, ripRelative: Bool = false, addressSize: Int) {
        self.segment = segment; self.base = base; self.index = index; self.scale = scale
        self.displacement = displacement; self.ripRelative = ripRelative; self.addressSize = addressSize
    }
}

/// The ModRM r/m operand: a general-purpose register (0-15) or memory.
public enum Operand: Equatable, Sendable {
    case register(Int)
    case memory(MemoryOperand)
}

/// The result of decoding one VMX instruction.
public struct DecodedInstruction: Equatable, Sendable {
    public var instruction: VMXInstruction
    /// Total length in bytes, prefixes included (1...15).
    public var length: Int
    /// Register operand size in bits: 64 in 64-bit mode, 32 otherwise
    /// (SDM Vol. 3C 31.3, VMREAD/VMWRITE: REX.W and 66 are not used).
    public var operandSize: Int
    /// Address size in bits (16/32/64), after any 67 prefix.
    public var addressSize: Int
    /// The ModRM r/m operand; nil for the forms without ModRM operands.
    public var rm: Operand?
    /// The ModRM reg field including REX.R, for VMREAD/VMWRITE/INVEPT/INVVPID; nil otherwise.
    public var reg: Int?
    /// The segment-override prefix, if any (the last one wins).
    public var segmentOverride: SegmentRegister?

    public init(instruction: VMXInstruction, length: Int, operandSize: Int, addressSize: Int,
                rm: Operand? = nil, reg: Int? = nil, segmentOverride: SegmentRegister? = nil) {
        self.instruction = instruction; self.length = length; self.operandSize = operandSize
        self.addressSize = addressSize; self.rm = rm; self.reg = reg; self.segmentOverride = segmentOverride
    }

    /// The memory operand, if the r/m operand is memory.
    public var memoryOperand: MemoryOperand? {
        if case .memory(let m) = rm { return m }
        return nil
    }

    /// Size in bytes of the memory operand when r/m is memory: 8 for the
    /// m64 VMCS-pointer forms, 16 for the INVEPT/INVVPID descriptor,
    /// operandSize/8 for VMREAD/VMWRITE, 0 for the forms without one.
    public var memoryOperandSize: Int {
        switch instruction {
        case .vmxon, .vmclear, .vmptrld, .vmptrst: 8
        case .invept, .invvpid: 16
        case .vmread, .vmwrite: operandSize / 8
        default: 0
        }
    }
}

extension VMXInstruction {
    /// The basic exit reason this instruction has when it causes a VM exit (SDM Appendix C).
    public var exitReason: VMXExitReason {
        switch self {
        case .vmcall: .vmcall
        case .vmclear: .vmclear
        case .vmlaunch: .vmlaunch
        case .vmptrld: .vmptrld
        case .vmptrst: .vmptrst
        case .vmread: .vmread
        case .vmresume: .vmresume
        case .vmwrite: .vmwrite
        case .vmxoff: .vmxoff
        case .vmxon: .vmxon
        case .invept: .invept
        case .invvpid: .invvpid
        case .vmfunc: .vmfunc
        }
    }
}
