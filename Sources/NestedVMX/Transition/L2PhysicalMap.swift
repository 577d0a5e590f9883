import VMXArch

/// How L2-physical addresses reach L1-physical memory: the strategy L0
/// builds EPT02 with (docs/ARCHITECTURE.md, "Paging strategies"). A new
/// strategy is a new case here, and the switches over it say what it needs.
public enum L2PhysicalMap: Equatable, Sendable {
    /// "Enable EPT" is 0: L2-physical addresses are L1-physical ones (SDM
    /// Vol. 3C 26.6: without EPT, guest-physical addresses are not translated).
    case identity
    /// EPT-on-EPT: L1's EPT12 at this EPTP (SDM 29.3), composed with L0's
    /// own map of L1's memory.
    case ept(pointer: UInt64)

    /// The strategy VMCS12 asks for.
    public init(_ vmcs: VMCS12) {
        self = vmcs.proc2.contains(.enableEPT) ? .ept(pointer: vmcs.read(.eptPointer) ?? 0) : .identity
    }

    /// Translates an L2-physical address for `access`. The identity map
    /// gives every address as itself, in a 4 KiB page with all permissions.
    public func translate(_ address: UInt64, access: EPTWalker.Access, physicalAddressBits: Int,
                          memory: some GuestMemoryAccess,
                          setAccessedDirty: Bool = false) -> Result<EPTWalker.Translation, EPTWalker.Failure> {
        switch self {
        case .identity:
            return .success(EPTWalker.Translation(physical: address, pageBase: address & ~0xfff, frame: address & ~0xfff,
                                                  pageSize: 0x1000, read: true, write: true, execute: true))
        case let .ept(pointer):
            return EPTWalker.translate(address, access: access, eptp: pointer, physicalAddressBits: physicalAddressBits,
                                       memory: memory, setAccessedDirty: setAccessedDirty)
        }
    }

    /// `count` bytes of L2-physical memory from `address`, page by page; nil
    /// when any of it does not translate for reading or is not L1 RAM.
    public func read(_ address: UInt64, count: Int, physicalAddressBits: Int, memory: some GuestMemoryAccess) -> [UInt8]? {
        guard let pieces = pieces(address, count: count, access: EPTWalker.Access(read: true),
                                  physicalAddressBits: physicalAddressBits, memory: memory, setAccessedDirty: false) else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(count)
        for piece in pieces {
            guard let bytes = memory.read(piece.physical, count: piece.range.count) else { return nil }
            out += bytes
        }
        return out
    }

    /// Writes `bytes` at L2-physical `address` through the map, as L2's own
    /// write would (EPT12 must allow writes); false, with nothing written, if
    /// any byte is not writable L1 RAM. Sets EPT12's accessed and dirty flags
    /// where they are kept.
    public func write(_ address: UInt64, bytes: [UInt8], physicalAddressBits: Int, memory: some GuestMemoryAccess) -> Bool {
        guard let pieces = pieces(address, count: bytes.count, access: EPTWalker.Access(write: true),
                                  physicalAddressBits: physicalAddressBits, memory: memory, setAccessedDirty: true),
              pieces.allSatisfy({ memory.read($0.physical, count: $0.range.count) != nil }) else { return false }
        for piece in pieces where !memory.write(piece.physical, bytes: Array(bytes[piece.range])) { return false }
        return true
    }

    /// The L1-physical pieces of `count` bytes at L2-physical `address`, one
    /// per page, each with its range of the bytes; nil if any page does not
    /// translate for `access`.
    private func pieces(_ address: UInt64, count: Int, access: EPTWalker.Access, physicalAddressBits: Int,
                        memory: some GuestMemoryAccess, setAccessedDirty: Bool) -> [(physical: UInt64, range: Range<Int>)]? {
        var pieces: [(physical: UInt64, range: Range<Int>)] = []
        var done = 0
        while done < count {
            let a = address &+ UInt64(done)
            guard case let .success(t) = translate(a, access: access, physicalAddressBits: physicalAddressBits, memory: memory,
                                                   setAccessedDirty: setAccessedDirty) else { return nil }
            let chunk = min(count - done, Int(t.pageSize - (a - t.pageBase)))
            pieces.append((t.physical, done..<done + chunk))
            done += chunk
        }
        return pieces
    }
}
