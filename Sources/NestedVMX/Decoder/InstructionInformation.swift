/// The VM-exit instruction-information field (SDM Vol. 3C 28.2.5) for a
/// VMX instruction that L2 executed and that is reflected to L1.
extension DecodedInstruction {
    /// The instruction-information value:
    /// - VMCLEAR/VMPTRLD/VMPTRST/VMXON (Table "... VMCLEAR, VMPTRLD, VMPTRST,
    ///   VMXON, XRSTORS, and XSAVES") and INVEPT/INVVPID (Table "... INVEPT,
    ///   INVPCID, and INVVPID"): scaling 1:0, address size 9:7 (0=16, 1=32,
    ///   2=64), bit 10 = 0, segment 17:15, index 21:18 + invalid 22, base
    ///   26:23 + invalid 27, and for INVEPT/INVVPID reg2 31:28.
    /// - VMREAD/VMWRITE (Table "... VMREAD and VMWRITE"): scaling 1:0, reg1
    ///   6:3 (the r/m register, register form only), address size 9:7,
    ///   mem/reg 10 (1 = register), segment 17:15, index 21:18 + invalid 22,
    ///   base 26:23 + invalid 27 (memory form only), reg2 31:28 (ModRM reg).
    /// Fields the SDM calls undefined are 0 (scaling without an index
    /// register; the memory fields of register forms). The other VMX
    /// instructions have no instruction information: 0.
    public func instructionInformation() -> UInt32 {
        var info: UInt32 = 0
        switch instruction {
        case .vmxon, .vmclear, .vmptrld, .vmptrst, .invept, .invvpid, .vmread, .vmwrite:
            break
        default:
            return 0
        }
        switch rm {
        case .register(let r)?:
            info |= UInt32(r & 0xF) << 3 | 1 << 10
        case .memory(let m)?:
            info |= Self.memoryInformation(m)
        case nil:
            break
        }
        if instruction.hasRegOperand, let reg {
            info |= UInt32(reg & 0xF) << 28
        }
        return info
    }

    static func memoryInformation(_ m: MemoryOperand) -> UInt32 {
        var info: UInt32 = 0
        let addressSizeCode: UInt32 = m.addressSize == 16 ? 0 : (m.addressSize == 32 ? 1 : 2)
        info |= addressSizeCode << 7
        info |= UInt32(m.segment.rawValue) << 15
        if let index = m.index {
            info |= UInt32(m.scale.trailingZeroBitCount) & 3        // log2(scale)
            info |= UInt32(index & 0xF) << 18
        } else {
            info |= 1 << 22
        }
        if let base = m.base {
            info |= UInt32(base & 0xF) << 23
        } else {
            info |= 1 << 27
        }
        return info
    }

    /// The exit qualification for a VMX instruction with a memory operand
    /// (`MemoryOperand.exitQualification`); 0 for register operands and
    /// instructions without one. `state` is L2 at the instruction.
    public func exitQualification(state: CPUState) -> UInt64 {
        if case .memory(let m)? = rm { return m.exitQualification(state: state, instructionLength: length) }
        return 0
    }
}

extension MemoryOperand {
    /// The exit qualification of an instruction with this memory operand
    /// and instruction information (SDM Vol. 3C 28.2.1: VMX instructions,
    /// LGDT and the other descriptor-table instructions, INVEPT, INVPCID,
    /// INVVPID): the displacement, sign-extended in 64-bit mode, and there
    /// with the RIP of the next instruction added for RIP-relative
    /// addressing (whose base field reads invalid); outside 64-bit mode
    /// the displacement truncated to the address size, as Bochs does.
    public func exitQualification(state: CPUState, instructionLength: Int) -> UInt64 {
        guard state.mode64 else {
            return UInt64(UInt32(truncatingIfNeeded: displacement)) & (addressSize == 16 ? 0xffff : 0xffff_ffff)
        }
        let disp = UInt64(bitPattern: displacement)
        return ripRelative ? disp &+ state.rip &+ UInt64(instructionLength) : disp
    }
}
