import NestedVMX

/// `FuzzTarget.pageWalk` and `FuzzTarget.eptWalk`. Input: the walk's
/// parameters, then guest RAM holding the tables.
enum PagingTargets {
    static func pageWalk(_ data: [UInt8]) {
        var input = FuzzInput(data)
        let cpu = FuzzCPU.state(&input)
        let linear: UInt64 = input.integer()
        let flags = input.u8()
        let access = MemoryAccess(write: flags & 1 != 0, user: flags & 2 != 0, fetch: flags & 4 != 0)
        let maxPhys = 32 + Int(input.u8() % 21)
        let memory = FuzzCPU.memory(input.rest())

        let first = PageWalker.translate(linear, access: access, state: cpu, memory: memory, physicalAddressBits: maxPhys)
        switch first {
        case let .success(physical):
            invariant(physical >> UInt64(maxPhys) == 0 || cpu.cr0 & 1 << 31 == 0, "physical \(physical) above MAXPHYADDR \(maxPhys)")
        case let .failure(e):
            // SDM 4.7: #PF with the access in the error code and CR2 = the address.
            invariant(e.vector == 14 && e.faultAddress == linear, "\(e)")
            let code = e.errorCode ?? 0
            invariant((code & 2 != 0) == access.write && (code & 4 != 0) == access.user, "error code \(code) for \(access)")
            invariant(code & 0x10 == 0 || access.fetch, "I/D bit without a fetch: \(code)")
        }
        // Setting accessed and dirty flags changes no outcome: the walk
        // repeats. Except under PAE paging, where a PDPT that is also a
        // paging structure of the same walk takes an accessed flag into
        // reserved PDPTE bits; the processor would not see it until CR3 is
        // loaded again (its PDPTE registers, SDM 4.4.1), L0 sees it at once.
        let pae = !cpu.longModeActive && cpu.cr4 & 0x20 != 0
        let second = PageWalker.translate(linear, access: access, state: cpu, memory: memory, physicalAddressBits: maxPhys)
        invariant(first == second || pae, "walk of \(linear) gave \(first), then \(second)")
    }

    static func eptWalk(_ data: [UInt8]) {
        var input = FuzzInput(data)
        let eptp = UInt64(input.u8()) % UInt64(FuzzCPU.pages) << 12 | UInt64(input.u8() & 0x7f)   // root, memory type, walk length, A/D
        let address: UInt64 = input.integer()
        let flags = input.u8()
        let access = EPTWalker.Access(read: flags & 1 != 0, write: flags & 2 != 0, fetch: flags & 4 != 0)
        let maxPhys = 32 + Int(input.u8() % 21)
        let setAD = input.bool()
        let memory = FuzzCPU.memory(input.rest())

        let first = EPTWalker.translate(address, access: access, eptp: eptp, physicalAddressBits: maxPhys,
                                        memory: memory, setAccessedDirty: setAD)
        switch first {
        case let .success(t):
            invariant(t.physical >> UInt64(maxPhys) == 0, "physical \(t.physical) above MAXPHYADDR \(maxPhys)")
            invariant(t.physical & (t.pageSize - 1) == address & (t.pageSize - 1), "page offset of \(address) lost")
            // SDM 29.3.3.2: an access the entries do not permit is a violation.
            invariant((!access.read || t.read) && (!access.write || t.write) && (!access.fetch || t.execute),
                      "\(access) allowed by \(t)")
        case let .failure(.violation(q)):
            // SDM 28.2.1, Table 28-7: bits 2:0 name the access.
            let bits = (access.read ? 1 : 0) | (access.write ? 2 : 0) | (access.fetch ? 4 : 0)
            invariant(q & 7 == UInt64(bits), "qualification \(q) for \(access)")
        case .failure(.misconfiguration):
            break
        }
        let second = EPTWalker.translate(address, access: access, eptp: eptp, physicalAddressBits: maxPhys,
                                         memory: memory, setAccessedDirty: setAD)
        switch (first, second) {
        case let (.success(a), .success(b)):
            invariant(a.physical == b.physical && a.read == b.read && a.write == b.write && a.execute == b.execute,
                      "EPT walk of \(address) gave \(a), then \(b)")
        default:
            invariant(first == second, "EPT walk of \(address) gave \(first), then \(second)")
        }
    }
}
