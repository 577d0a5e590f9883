import CZydis
import NestedVMX

/// The instructions KVM keeps to itself that L0 takes back for L2 by
/// patching (docs/PATCHING.md): each is an exit in VMX non-root operation,
/// unconditional or under one of L1's controls (SDM Vol. 3C 26.1).
public enum SensitiveInstruction: String, Equatable, Sendable, CaseIterable {
    /// CPUID exits unconditionally (26.1.2), reason 10.
    case cpuid
    /// RDTSC exits under "RDTSC exiting" (26.1.3), reason 16; else it reads
    /// the TSC plus TSC_OFFSET under "use TSC offsetting" (26.3). RDTSCP
    /// likewise (reason 51), once "enable RDTSCP" lets it run.
    case rdtsc, rdtscp
    /// MOV to or from CR0, CR3, CR4 or CR8, reason 28: CR3 under CR3-load or
    /// CR3-store exiting, CR8 under CR8-load or CR8-store exiting, CR0 and
    /// CR4 writes through the guest/host masks (26.1.3); CR0 and CR4 reads
    /// see the read shadows (26.3).
    case controlRegisterMove
    /// CLTS, reason 28 when CR0.TS is owned by L1 and shadowed set (26.1.3).
    case clts
    /// LMSW, reason 28 through the CR0 mask (26.1.3); SMSW reads the CR0
    /// read shadow (26.3).
    case lmsw, smsw
    /// MOV to or from a debug register, reason 29 under MOV-DR exiting.
    case debugRegisterMove
    /// WBINVD, reason 54 under WBINVD exiting; INVD, reason 13, always.
    case wbinvd, invd
    /// INVLPG exits under "INVLPG exiting" (26.1.3), reason 14; INVPCID
    /// (58) under it too with "enable INVPCID", and is #UD without that.
    case invlpg, invpcid
    /// RDPMC (15), MONITOR (39), MWAIT (36), PAUSE (40), RDRAND (57) and
    /// RDSEED (61), each under its own exiting control (26.1.3).
    case rdpmc, monitor, mwait, pause, rdrand, rdseed
    /// XSETBV exits unconditionally (26.1.2), reason 55; so does VMCALL,
    /// reason 18, which without the patch reaches L0 only through a
    /// breakpoint on L2's #UD handler.
    case xsetbv, vmcall
    /// LGDT, LIDT, SGDT, SIDT (46) and LLDT, LTR, SLDT, STR (47) under
    /// "descriptor-table exiting" (26.1.3).
    case descriptorTable

    /// `bytes` is the whole instruction, for the forms a mnemonic shares
    /// (MOV to or from a control register is a MOV to Zydis).
    init?(_ mnemonic: ZydisMnemonic, bytes: UnsafeRawBufferPointer) {
        switch mnemonic {
        case ZYDIS_MNEMONIC_CPUID: self = .cpuid
        case ZYDIS_MNEMONIC_RDTSC: self = .rdtsc
        case ZYDIS_MNEMONIC_RDTSCP: self = .rdtscp
        case ZYDIS_MNEMONIC_INVLPG: self = .invlpg
        case ZYDIS_MNEMONIC_INVPCID: self = .invpcid
        case ZYDIS_MNEMONIC_MOV where Self.movesControlRegister(bytes): self = .controlRegisterMove
        case ZYDIS_MNEMONIC_CLTS: self = .clts
        case ZYDIS_MNEMONIC_LMSW: self = .lmsw
        case ZYDIS_MNEMONIC_SMSW: self = .smsw
        case ZYDIS_MNEMONIC_MOV where Self.movesDebugRegister(bytes): self = .debugRegisterMove
        case ZYDIS_MNEMONIC_WBINVD: self = .wbinvd
        case ZYDIS_MNEMONIC_INVD: self = .invd
        case ZYDIS_MNEMONIC_RDPMC: self = .rdpmc
        case ZYDIS_MNEMONIC_MONITOR: self = .monitor
        case ZYDIS_MNEMONIC_MWAIT: self = .mwait
        case ZYDIS_MNEMONIC_PAUSE: self = .pause
        case ZYDIS_MNEMONIC_RDRAND: self = .rdrand
        case ZYDIS_MNEMONIC_RDSEED: self = .rdseed
        case ZYDIS_MNEMONIC_XSETBV: self = .xsetbv
        case ZYDIS_MNEMONIC_VMCALL: self = .vmcall
        case ZYDIS_MNEMONIC_SGDT, ZYDIS_MNEMONIC_SIDT, ZYDIS_MNEMONIC_LGDT, ZYDIS_MNEMONIC_LIDT,
             ZYDIS_MNEMONIC_SLDT, ZYDIS_MNEMONIC_STR, ZYDIS_MNEMONIC_LLDT, ZYDIS_MNEMONIC_LTR: self = .descriptorTable
        default: return nil
        }
    }

    /// 0F 20 /r or 0F 22 /r with CR0, CR3, CR4 or (REX.R) CR8 in ModRM.reg,
    /// after REX and legacy prefixes.
    static func movesControlRegister(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let move = controlRegisterMove(bytes) else { return false }
        return [0, 3, 4, 8].contains(move.register)
    }

    /// A MOV to (0F 22) or from (0F 20) a control register: which one, and
    /// the direction.
    static func controlRegisterMove(_ bytes: UnsafeRawBufferPointer) -> (register: Int, write: Bool)? {
        let (i, rex) = opcodeStart(bytes)
        guard i + 2 < bytes.count, bytes[i] == 0x0f, bytes[i + 1] == 0x20 || bytes[i + 1] == 0x22 else { return nil }
        return (Int((bytes[i + 2] >> 3) & 7) | (rex & 4 != 0 ? 8 : 0), bytes[i + 1] == 0x22)
    }

    /// Where the opcode starts, past legacy and REX prefixes, and the REX
    /// byte (0 for none).
    static func opcodeStart(_ bytes: UnsafeRawBufferPointer) -> (index: Int, rex: UInt8) {
        var i = 0, rex: UInt8 = 0
        while i < bytes.count, [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf2, 0xf3].contains(bytes[i])
            || (0x40...0x4f).contains(bytes[i]) {
            if (0x40...0x4f).contains(bytes[i]) { rex = bytes[i] }
            i += 1
        }
        return (i, rex)
    }

    /// 0F 21 /r or 0F 23 /r, after REX and legacy prefixes.
    static func movesDebugRegister(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let i = opcodeStart(bytes).index
        return i + 1 < bytes.count && bytes[i] == 0x0f && (bytes[i + 1] == 0x21 || bytes[i + 1] == 0x23)
    }

    /// What objdump prints for it: its mnemonic, and for a MOV the operand.
    public func matches(objdump text: String) -> Bool {
        let mnemonic = text.split(separator: " ").first.map(String.init) ?? ""
        switch self {
        case .debugRegisterMove: return mnemonic == "mov" && text.contains("%db")
        case .controlRegisterMove: return mnemonic == "mov" && ["%cr0", "%cr3", "%cr4", "%cr8"].contains { text.contains($0) }
        case .descriptorTable:
            return ["sgdt", "sidt", "lgdt", "lidt", "sldt", "str", "lldt", "ltr"].contains { mnemonic == $0 || mnemonic == $0 + "q" }
        default: return mnemonic == rawValue
        }
    }

    /// Its opcode bytes (SDM Vol. 2), after REX, 66 and 67 prefixes.
    public var opcode: [UInt8] {
        switch self {
        case .cpuid: [0x0f, 0xa2]
        case .rdtsc: [0x0f, 0x31]
        case .rdtscp: [0x0f, 0x01, 0xf9]
        case .controlRegisterMove, .debugRegisterMove, .descriptorTable: [0x0f]
        case .clts: [0x0f, 0x06]
        case .lmsw, .smsw, .invlpg: [0x0f, 0x01]
        case .wbinvd: [0x0f, 0x09]
        case .invd: [0x0f, 0x08]
        case .invpcid: [0x0f, 0x38, 0x82]
        case .rdpmc: [0x0f, 0x33]
        case .monitor: [0x0f, 0x01, 0xc8]
        case .mwait: [0x0f, 0x01, 0xc9]
        case .pause: [0xf3, 0x90]
        case .rdrand, .rdseed: [0x0f, 0xc7]
        case .xsetbv: [0x0f, 0x01, 0xd1]
        case .vmcall: [0x0f, 0x01, 0xc1]
        }
    }

    /// The class of L1's controls that decides whether L0 traps it
    /// (`ExitRouting.trapClasses`); `bytes` tells the control register and
    /// direction of a MOV CR.
    public func trapClass(bytes: [UInt8]) -> TrapClasses {
        switch self {
        case .cpuid: .cpuid
        case .rdtsc: .rdtsc
        case .rdtscp: .rdtscp
        case .controlRegisterMove:
            bytes.withUnsafeBytes { raw in
                switch Self.controlRegisterMove(raw) {
                case (3, true)?: .cr3Load
                case (3, false)?: .cr3Store
                case (8, _)?: .cr8
                case (_, false)?: .controlRegisterRead
                default: .controlRegisterWrite
                }
            }
        case .clts: .clts
        case .lmsw: .lmsw
        case .smsw: .controlRegisterRead
        case .debugRegisterMove: .movDR
        case .wbinvd: .wbinvd
        case .invd: .invd
        case .invlpg: .invlpg
        case .invpcid: .invpcid
        case .rdpmc: .rdpmc
        case .monitor: .monitor
        case .mwait: .mwait
        case .pause: .pause
        case .rdrand: .rdrand
        case .rdseed: .rdseed
        case .xsetbv: .xsetbv
        case .vmcall: .vmcall
        case .descriptorTable: .descriptorTable
        }
    }
}

/// One sensitive instruction in a loaded image, at its load (physical) address.
public struct SensitiveSite: Equatable, Sendable {
    public var address: UInt64
    public var bytes: [UInt8]
    public var instruction: SensitiveInstruction
    /// The class of L1's controls that decides whether L0 traps it.
    public var trapClass: TrapClasses
    public var length: Int { bytes.count }

    public init(address: UInt64, bytes: [UInt8], instruction: SensitiveInstruction) {
        self.address = address; self.bytes = bytes; self.instruction = instruction
        trapClass = instruction.trapClass(bytes: bytes)
    }
}

/// A sweep of an image's code with Zydis: every function of the symbol
/// table, or each executable segment of an image without one, decoded from
/// its first byte in 64-bit mode. Bytes that do not decode end the
/// function's sweep there (data in code).
public struct CodeSweep: Equatable, Sendable {
    /// Each decoded instruction's load address and length, in order.
    public var instructions: [(address: UInt64, length: Int)] = []
    public var sites: [SensitiveSite] = []
    /// Bytes decoded.
    public var bytesSwept = 0

    public static func == (a: CodeSweep, b: CodeSweep) -> Bool {
        a.sites == b.sites && a.bytesSwept == b.bytesSwept
            && a.instructions.elementsEqual(b.instructions) { $0.address == $1.address && $0.length == $1.length }
    }

    public init(image: ELFImage, bytes: [UInt8]) {
        var decoder = ZydisDecoder()
        guard terrapin_zydis_init(&decoder, 1) != 0 else { return }
        let code = image.segments.filter { $0.executable && $0.fileSize > 0 }
        var ranges: [(segment: LoadSegment, start: UInt64, end: UInt64)] = []
        for s in code {
            let inside = image.functions.filter { $0.address >= s.virtualAddress && $0.address - s.virtualAddress < s.fileSize }
            if inside.isEmpty {
                ranges.append((s, s.virtualAddress, s.virtualAddress + s.fileSize))
            } else {
                for f in inside { ranges.append((s, f.address, min(f.address + f.size, s.virtualAddress + s.fileSize))) }
            }
        }
        bytes.withUnsafeBytes { raw in
            for (s, start, end) in ranges {
                var at = start
                while at < end {
                    let offset = Int(s.fileOffset + (at - s.virtualAddress))
                    let count = Int(end - at)
                    guard offset >= 0, offset + count <= raw.count else { break }
                    var mnemonic = ZYDIS_MNEMONIC_INVALID
                    let length = Int(terrapin_zydis_decode(&decoder, raw.baseAddress! + offset, count, &mnemonic))
                    guard length > 0 else { break }
                    let load = s.physicalAddress + (at - s.virtualAddress)
                    instructions.append((load, length))
                    if let kind = SensitiveInstruction(mnemonic, bytes: UnsafeRawBufferPointer(rebasing: raw[offset..<offset + length])) {
                        sites.append(SensitiveSite(address: load, bytes: Array(raw[offset..<offset + length]), instruction: kind))
                    }
                    bytesSwept += length
                    at += UInt64(length)
                }
            }
        }
    }
}
