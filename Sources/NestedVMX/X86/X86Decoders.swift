/// The few instructions L0 recognises outside the VMX decoder, from their
/// bytes alone.
public enum X86Decoders {
    /// `mov cr4, r64`: [REX] 0F 22 /r with reg = 4 (SDM Vol. 2B "MOV—Move
    /// to/from Control Registers"). Returns the source register and the length.
    public static func decodeMovToCR4(_ bytes: [UInt8]) -> (register: Int, length: Int)? {
        var i = 0
        var rex: UInt8 = 0
        if i < bytes.count, (0x40...0x4f).contains(bytes[i]) { rex = bytes[i]; i += 1 }
        guard i + 2 < bytes.count, bytes[i] == 0x0f, bytes[i + 1] == 0x22 else { return nil }
        let modrm = bytes[i + 2]
        let cr = Int((modrm >> 3) & 7) | (rex & 4 != 0 ? 8 : 0)
        guard cr == 4 else { return nil }
        return (Int(modrm & 7) | (rex & 1 != 0 ? 8 : 0), i + 3)
    }

    /// True if the bytes (after prefixes) start with a VMX opcode: 0F 01 C1-C4/D4,
    /// 0F 78, 0F 79, 0F C7 /6-/7, 66 0F 38 80/81.
    public static func isVMXOpcode(_ bytes: [UInt8]) -> Bool {
        var i = 0
        while i < bytes.count, [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3].contains(bytes[i])
            || (0x40...0x4f).contains(bytes[i]) { i += 1 }
        guard i + 2 < bytes.count, bytes[i] == 0x0f else { return false }
        switch bytes[i + 1] {
        case 0x01: return [0xc1, 0xc2, 0xc3, 0xc4, 0xd4].contains(bytes[i + 2])
        case 0x78, 0x79: return true
        case 0xc7: return (bytes[i + 2] >> 3) & 7 >= 6
        case 0x38: return i + 3 < bytes.count && (bytes[i + 2] == 0x80 || bytes[i + 2] == 0x81)
        default: return false
        }
    }

    /// INT3 (CC), INT n (CD ib), INT1 (F1) or INTO (CE) at the start of
    /// `bytes` (SDM Vol. 2A "INT n/INTO/INT3/INT1"): the vector, the event's
    /// type and the length. INTO is #UD in 64-bit mode and raises vector 4
    /// only with RFLAGS.OF set (`overflow`); otherwise it is nil here.
    public static func softwareInterrupt(_ bytes: [UInt8], mode64: Bool, overflow: Bool)
        -> (vector: UInt8, kind: DeliveredEvent.Kind, length: Int)? {
        switch bytes.first {
        case 0xcc: return (3, .softwareException, 1)
        case 0xcd: return bytes.count > 1 ? (bytes[1], .softwareInterrupt, 2) : nil
        case 0xf1: return (1, .privilegedSoftwareException, 1)
        case 0xce where !mode64 && overflow: return (4, .softwareException, 1)
        default: return nil
        }
    }

    /// An instruction that exists only where CPUID offers it, at the start
    /// of `bytes` (after prefixes; REX counts as one only in 64-bit mode). Where CPUID does not offer it, it is #UD (SDM Vol. 2,
    /// each instruction's "#UD If CPUID..."); KVM on our hosts reports it
    /// as an emulation failure instead.
    public static func cpuidGated(_ bytes: [UInt8], mode64: Bool) -> CPUIDGatedInstruction? {
        var i = 0, repz = false, opsize = false
        let end = min(bytes.count, InstructionFetch.maximumLength)
        prefixes: while i < end {
            switch bytes[i] {
            case 0x67, 0xf2, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65: break
            case 0x66: opsize = true
            case 0xf3: repz = true
            case 0x40...0x4f where mode64: break
            default: break prefixes
            }
            i += 1
        }
        guard i + 3 <= end, bytes[i] == 0x0f else { return nil }
        let modrm = bytes[i + 2]
        switch (bytes[i + 1], modrm) {
        case (0x01, 0xc8): return .monitor
        case (0x01, 0xc9): return .mwait
        case (0x01, 0xd0): return .xgetbv
        case (0x01, 0xd1): return .xsetbv
        case (0x01, 0xf9): return .rdtscp
        case (0xc7, _) where modrm >> 6 == 3 && (modrm >> 3) & 7 == 7: return repz ? .rdpid : .rdseed
        case (0xc7, _) where modrm >> 6 == 3 && (modrm >> 3) & 7 == 6 && !repz: return .rdrand
        case (0x38, 0x82) where opsize: return .invpcid
        default: return nil
        }
    }

    /// The length of the I/O instruction at the start of `bytes` (SDM Vol. 2:
    /// IN/OUT E4-E7 with an 8-bit port, EC-EF with DX, INS/OUTS 6C-6F), with
    /// its prefixes; REX counts as a prefix only in 64-bit mode. nil when the
    /// bytes are not one.
    public static func ioInstructionLength(_ bytes: [UInt8], mode64: Bool) -> Int? {
        for (i, b) in bytes.prefix(InstructionFetch.maximumLength).enumerated() {
            switch b {
            case 0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65: continue
            case 0x40...0x4f where mode64: continue
            case 0xe4...0xe7: return i + 2 <= InstructionFetch.maximumLength ? i + 2 : nil
            case 0xec...0xef, 0x6c...0x6f: return i + 1
            default: return nil
            }
        }
        return nil
    }

    /// The length of the OUT whose last byte comes just before RIP, from the
    /// three bytes ending there and the access KVM reported: 66 E7 ib for a
    /// 16-bit immediate port, 66 EF for 16-bit through DX, E6/E7 ib for an
    /// 8- or 32-bit immediate port, else EE/EF (SDM Vol. 2B "OUT").
    public static func outLength(endingWith bytes: [UInt8], port: UInt16, size: Int) -> Int {
        guard bytes.count == 3 else { return 1 }
        let wide: UInt8 = size == 1 ? 0 : 1
        let imm = bytes[2] == UInt8(truncatingIfNeeded: port) && port < 0x100 && bytes[1] == 0xe6 | wide
        if size == 2, imm, bytes[0] == 0x66 { return 3 }
        if size == 2, bytes[1] == 0x66, bytes[2] == 0xef { return 2 }
        if imm, size != 2 { return 2 }
        return 1
    }
}

/// The instructions `X86Decoders.cpuidGated` recognises.
public enum CPUIDGatedInstruction: String, Equatable, Sendable {
    case monitor, mwait, xgetbv, xsetbv, rdtscp, rdpid, rdrand, rdseed, invpcid
}
