/// Reads and writes of guest linear memory that may cross page boundaries:
/// every page is translated (SDM Vol. 3A chapter 4) before any byte moves,
/// so a fault on a later page leaves memory untouched.
extension PageWalker {
    /// Reads `count` bytes at `linear`.
    public static func readLinear(_ linear: UInt64, count: Int, access: MemoryAccess, state: CPUState,
                                  memory: some GuestMemoryAccess,
                                  physicalAddressBits: Int = 46) -> Result<[UInt8], LinearAccessError> {
        // Within one page, the usual case: translated as `translateRange`
        // does it, without building its list of pieces.
        if let first = onePage(linear, count: count, state: state) {
            switch translate(first, access: access, state: state, memory: memory, setAccessedDirty: true,
                             physicalAddressBits: physicalAddressBits) {
            case .failure(let e): return .failure(.fault(e))
            case .success(let pa):
                guard let bytes = memory.read(pa, count: count) else { return .failure(.notRAM(physical: pa)) }
                return .success(bytes)
            }
        }
        switch translateRange(linear, count: count, access: access, state: state, memory: memory,
                              physicalAddressBits: physicalAddressBits) {
        case .failure(let e):
            return .failure(e)
        case .success(let pieces):
            var out: [UInt8] = []
            out.reserveCapacity(max(count, 0))
            for piece in pieces {
                guard let bytes = memory.read(piece.physical, count: piece.count) else {
                    return .failure(.notRAM(physical: piece.physical))
                }
                out += bytes
            }
            return .success(out)
        }
    }

    /// Writes `bytes` at `linear` (the access is a write whatever
    /// `access.write` says). Nothing is written unless every page translates
    /// and every physical range is RAM.
    public static func writeLinear(_ linear: UInt64, bytes: [UInt8], access: MemoryAccess, state: CPUState,
                                   memory: some GuestMemoryAccess,
                                   physicalAddressBits: Int = 46) -> Result<Void, LinearAccessError> {
        var access = access
        access.write = true
        switch translateRange(linear, count: bytes.count, access: access, state: state, memory: memory,
                              physicalAddressBits: physicalAddressBits) {
        case .failure(let e):
            return .failure(e)
        case .success(let pieces):
            for piece in pieces where memory.read(piece.physical, count: piece.count) == nil {
                return .failure(.notRAM(physical: piece.physical))
            }
            var offset = 0
            for piece in pieces {
                guard memory.write(piece.physical, bytes: Array(bytes[offset..<offset + piece.count])) else {
                    return .failure(.notRAM(physical: piece.physical))
                }
                offset += piece.count
            }
            return .success(())
        }
    }

    struct Piece { var physical: UInt64; var count: Int }

    /// The (wrapped) linear address of `count` > 0 bytes that lie within
    /// one page, else nil.
    static func onePage(_ linear: UInt64, count: Int, state: CPUState) -> UInt64? {
        // Linear addresses wrap at 4 GiB outside IA-32e mode.
        let first = state.longModeActive ? linear : linear & 0xFFFF_FFFF
        return count > 0 && count <= Int(0x1000 - (first & 0xFFF)) ? first : nil
    }

    /// Splits [linear, linear+count) at 4 KiB boundaries and translates each
    /// piece: first without side effects, then (all succeeded) again setting
    /// the accessed/dirty flags, so a fault leaves the paging structures as
    /// they were.
    static func translateRange(_ linear: UInt64, count: Int, access: MemoryAccess, state: CPUState,
                               memory: some GuestMemoryAccess,
                               physicalAddressBits: Int) -> Result<[Piece], LinearAccessError> {
        // Linear addresses wrap at 4 GiB outside IA-32e mode.
        let mask: UInt64 = state.longModeActive ? ~0 : 0xFFFF_FFFF
        guard count > 0 else { return .success([]) }
        if let first = onePage(linear, count: count, state: state) {
            // One page, the usual case: a walk that fails sets no flags, so
            // one walk that sets them is the two below (half the cost).
            switch translate(first, access: access, state: state, memory: memory, setAccessedDirty: true,
                             physicalAddressBits: physicalAddressBits) {
            case .failure(let e): return .failure(.fault(e))
            case .success(let pa): return .success([Piece(physical: pa, count: count)])
            }
        }
        var chunks: [(linear: UInt64, count: Int)] = []
        var done = 0
        while done < count {
            let address = (linear &+ UInt64(done)) & mask
            let n = min(count - done, Int(0x1000 - (address & 0xFFF)))
            chunks.append((address, n))
            done += n
        }
        for setFlags in [false, true] {
            var pieces: [Piece] = []
            for chunk in chunks {
                switch translate(chunk.linear, access: access, state: state, memory: memory,
                                 setAccessedDirty: setFlags, physicalAddressBits: physicalAddressBits) {
                case .failure(let e): return .failure(.fault(e))
                case .success(let pa): pieces.append(Piece(physical: pa, count: chunk.count))
                }
            }
            if setFlags { return .success(pieces) }
        }
        return .success([])
    }
}
