import CZydis

/// The instructions KVM keeps to itself that L0 takes back for L2 by
/// patching (docs/PATCHING.md): each is an exit in VMX non-root operation,
/// unconditional or under one of L1's controls (SDM Vol. 3C 26.1).
public enum SensitiveInstruction: String, Equatable, Sendable, CaseIterable {
    /// CPUID exits unconditionally (26.1.2), reason 10.
    case cpuid
    /// RDTSC exits under "RDTSC exiting" (26.1.3), reason 16; else it reads
    /// the TSC plus TSC_OFFSET under "use TSC offsetting" (26.3).
    case rdtsc

    init?(_ mnemonic: ZydisMnemonic) {
        switch mnemonic {
        case ZYDIS_MNEMONIC_CPUID: self = .cpuid
        case ZYDIS_MNEMONIC_RDTSC: self = .rdtsc
        default: return nil
        }
    }

    /// objdump's name for it, and its encoding (SDM Vol. 2).
    public var mnemonic: String { rawValue }
    public var encoding: [UInt8] {
        switch self {
        case .cpuid: [0x0f, 0xa2]
        case .rdtsc: [0x0f, 0x31]
        }
    }
}

/// One sensitive instruction in a loaded image, at its load (physical) address.
public struct SensitiveSite: Equatable, Sendable {
    public var address: UInt64
    public var bytes: [UInt8]
    public var instruction: SensitiveInstruction
    public var length: Int { bytes.count }
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
                    if let kind = SensitiveInstruction(mnemonic) {
                        sites.append(SensitiveSite(address: load, bytes: Array(raw[offset..<offset + length]), instruction: kind))
                    }
                    bytesSwept += length
                    at += UInt64(length)
                }
            }
        }
    }
}
