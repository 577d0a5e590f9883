/// The MOV forms compilers emit for device (MMIO) accesses, decoded so L0 can
/// find the instruction behind an access KVM has already retired (SDM Vol. 2B
/// "MOV", "MOVZX"): 88/89 stores, 8A/8B loads, C6/C7 immediate stores,
/// A0-A3 moffs loads and stores (`movabs` to a constant address), 0F B6/B7
/// zero-extending loads.
public struct MemoryMove: Equatable, Sendable {
    public var length: Int
    public var operand: MemoryOperand
    public var isWrite: Bool
    /// Bytes accessed in memory.
    public var size: Int
    /// The register written by a load, or stored by a register store.
    public var register: Int?
}

extension VMXDecoder {
    public static func decodeMemoryMove(_ bytes: some Collection<UInt8>, state: CPUState) -> MemoryMove? {
        var c = Cursor(bytes: Array(bytes.prefix(maximumLength)))
        let mode64 = state.mode64
        guard let (p, first) = try? readPrefixes(&c, mode64: mode64) else { return nil }
        var opcode = UInt16(first)
        if first == 0x0f { guard let second = try? c.next() else { return nil }; opcode = 0x0f00 | UInt16(second) }
        let wide = mode64 && p.rexW ? 8 : (p.operandSize ? 2 : 4)
        let defaultAddressSize = mode64 ? 64 : (state.cs.db ? 32 : 16)
        let addressSize = mode64 ? (p.addressSize ? 32 : 64)
            : (p.addressSize ? (defaultAddressSize == 32 ? 16 : 32) : defaultAddressSize)
        if (0xa0...0xa3).contains(first), !p.lock {
            // moffs: the address is an immediate of the address size, no ModRM.
            guard let offset = try? c.littleEndian(addressSize / 8) else { return nil }
            let operand = MemoryOperand(segment: p.segment ?? .ds, displacement: Int64(bitPattern: offset),
                                        addressSize: addressSize)
            return MemoryMove(length: c.position, operand: operand, isWrite: first >= 0xa2,
                              size: first & 1 == 0 ? 1 : wide, register: 0)
        }
        let size: Int, isWrite: Bool, immediate: Int
        switch opcode {
        case 0x88: (size, isWrite, immediate) = (1, true, 0)
        case 0x89: (size, isWrite, immediate) = (wide, true, 0)
        case 0x8a: (size, isWrite, immediate) = (1, false, 0)
        case 0x8b: (size, isWrite, immediate) = (wide, false, 0)
        case 0xc6: (size, isWrite, immediate) = (1, true, 1)
        case 0xc7: (size, isWrite, immediate) = (wide, true, min(wide, 4))
        case 0x0fb6: (size, isWrite, immediate) = (1, false, 0)
        case 0x0fb7: (size, isWrite, immediate) = (2, false, 0)
        default: return nil
        }
        guard !p.lock, let modrm = try? c.next() else { return nil }
        guard case let .memory(m)? = try? decodeRM(modrm, &c, p: p, addressSize: addressSize, mode64: mode64) else { return nil }
        if (opcode == 0xc6 || opcode == 0xc7) && (modrm >> 3) & 7 != 0 { return nil }
        guard (try? c.littleEndian(immediate)) != nil else { return nil }
        let register = immediate == 0 ? Int((modrm >> 3) & 7) | p.rexR : nil
        return MemoryMove(length: c.position, operand: m, isWrite: isWrite, size: size, register: register)
    }

    /// The length of the store that ends at `state.rip` and wrote `address`
    /// (an L2-physical address): KVM retires MMIO stores before it reports
    /// them. Each candidate start is decoded and accepted only if its operand
    /// translates to `address`; nil when none does.
    public static func retiredStoreLength(endingAt state: CPUState, address: UInt64, size: Int,
                                          fetch: (UInt64, Int) -> [UInt8]?, translate: (UInt64) -> UInt64?) -> Int? {
        for length in 2...maximumLength {
            var at = state
            at.rip = state.rip &- UInt64(length)
            guard let bytes = fetch(at.cs.base &+ at.rip, length),
                  let move = decodeMemoryMove(bytes, state: at), move.isWrite, move.length == length, move.size == size,
                  case let .success(linear) = move.operand.linearAddress(state: at, instructionLength: length, size: size,
                                                                         write: true),
                  translate(linear) == address else { continue }
            return length
        }
        return nil
    }
}
