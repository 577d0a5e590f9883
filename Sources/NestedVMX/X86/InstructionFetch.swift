/// Instruction bytes as the processor fetches them (SDM Vol. 3A 4.6): up
/// to 15 bytes at a linear address through the guest's paging, stopping at
/// the first page that cannot be fetched from.
public enum InstructionFetch {
    public static let maximumLength = 15

    public static func bytes(at linear: UInt64, cpu: CPUState, memory: some GuestMemoryAccess) -> [UInt8] {
        var bytes: [UInt8] = []
        var address = linear
        while bytes.count < maximumLength {
            let chunk = min(maximumLength - bytes.count, Int(0x1000 - (address & 0xfff)))
            guard case let .success(b) = PageWalker.readLinear(address, count: chunk, access: MemoryAccess(fetch: true),
                                                                state: cpu, memory: memory) else { break }
            bytes += b
            address &+= UInt64(chunk)
        }
        return bytes
    }
}
