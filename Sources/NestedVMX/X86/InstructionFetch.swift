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

    /// The bytes of the instruction at `cpu`'s RIP, given the ones a vCPU
    /// reported (KVM's emulation failure stops at a page boundary, so a
    /// VMWRITE that crosses one arrives as `0f 79`): the rest is fetched
    /// through the guest's paging, and kept only if it agrees with what was
    /// reported.
    public static func completing(_ reported: [UInt8], cpu: CPUState, memory: some GuestMemoryAccess) -> [UInt8] {
        guard reported.count < maximumLength else { return reported }
        let fetched = bytes(at: cpu.cs.base &+ cpu.rip, cpu: cpu, memory: memory)
        return fetched.count > reported.count && fetched.starts(with: reported) ? fetched : reported
    }
}
