/// Reads and writes of guest linear memory that may cross page boundaries:
/// every page is translated (SDM Vol. 3A chapter 4) before any byte moves,
/// so a fault on a later page leaves memory untouched.
extension PageWalker {
    /// Reads `count` bytes at `linear`.
    public static func readLinear(_ linear: UInt64, count: Int, access: MemoryAccess, state: CPUState,
                                  memory: some GuestMemoryAccess,
                                  physicalAddressBits: Int = 46) -> Result<[UInt8], LinearAccessError> {
        switch translateRange(linear, count: count, access: access, state: state, memory: memory,
                              physicalAddressBits: physicalAddressBits) {
        case .failure(let e):
            return .failure(e)
        case .success(let pieces):
            if pieces.count == 1 {
                guard let bytes = memory.read(pieces[0].physical, count: pieces[0].count) else {
                    return .failure(.notRAM(physical: pieces[0].physical))
                }
                return .success(bytes)
            }
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
        let first = linear & mask
        if count <= Int(0x1000 - (first & 0xFFF)) {
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
