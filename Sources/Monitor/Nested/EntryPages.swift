import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// What an L2 event delivery touches, in EPT02 before L2 runs: KVM turns
/// a delivery that meets an address with no slot into a triple fault.
extension Machine {
    /// What a delivery that switches stacks reads and writes (SDM Vol. 3A
    /// 6.12.1, 6.14.4-6.14.5, 7.7): the TSS, and the stacks it names below
    /// their tops: RSP0 and IST1-7 of an IA-32e TSS, SS0:ESP0 of a 32-bit one.
    func stackSwitchPages(_ state: CPUState) -> [UInt64] {
        guard state.protectedMode, !state.virtual8086, !state.tr.unusable else { return [] }
        var pages = [state.tr.base, state.tr.base &+ UInt64(state.tr.limit)]
        if state.longModeActive {
            guard let b = l2Bytes(at: state.tr.base &+ 4, count: 88, state: state) else { return pages }
            for offset in [0] + (0..<7).map({ 32 + 8 * $0 }) {
                let top = b.littleEndian(at: offset, count: 8)
                if top != 0 { pages.append(top &- 1) }
            }
        } else {
            guard let b = l2Bytes(at: state.tr.base &+ 4, count: 6, state: state),
                  let ss0 = GDT.descriptor(b.littleEndian(at: 4, count: 2), cpu: state, memory: L2PhysicalMemory(machine: self))
            else { return pages }
            pages.append((GDT.base(of: ss0) &+ b.littleEndian(at: 0, count: 4) &- 1) & 0xffff_ffff)
        }
        return pages
    }

    /// Maps the EPT12 run holding the L2 page of `linear` if it has no slot
    /// yet. Returns the EPT violation or misconfiguration an access to it
    /// would meet; nil when it is mapped now, or when L2's own paging or an
    /// L1 device address stands in the way (then L2's run finds out).
    ///
    /// The pages of L2's paging structures that translate `linear` come
    /// first: KVM walks them itself, and meets a page with no slot as a
    /// #PF or a triple fault, where the SDM has an EPT violation with
    /// qualification bit 8 clear (an access to a paging structure).
    func mapL2Page(_ linear: UInt64, access: EPTWalker.Access, state: CPUState, l2: L2Machine,
                   eptp: UInt64) throws(KVMError) -> NestedExit? {
        let l2Memory = L2PhysicalMemory(machine: self)
        // The entries L2's walk reads, up to one that is not there.
        let walk = ReadLog(l2Memory)
        _ = PageWalker.translate(linear, access: MemoryAccess(fetch: access.fetch), state: state, memory: walk,
                                 setAccessedDirty: false)
        for entry in walk.addresses {
            if let exit = try mapL2Physical(entry, access: EPTWalker.Access(read: true), eptp: eptp, l2: l2,
                                            linear: linear, linearBits: 1 << 7) { return exit }
        }
        guard case let .success(gpa) = PageWalker.translate(linear, access: MemoryAccess(fetch: access.fetch), state: state,
                                                            memory: l2Memory) else { return nil }
        return try mapL2Physical(gpa, access: access, eptp: eptp, l2: l2, linear: linear, linearBits: EPTWalker.linearAccessBits)
    }

    /// Maps the EPT12 run holding L2-physical `gpa` if it has no slot yet.
    /// Returns the EPT violation (`linearBits` and `linear` as Table 28-7
    /// gives them for the access) or misconfiguration an `access` to it
    /// meets; nil when it is mapped, or lies on one of L1's device addresses.
    private func mapL2Physical(_ gpa: UInt64, access: EPTWalker.Access, eptp: UInt64, l2: L2Machine,
                               linear: UInt64, linearBits: UInt64) throws(KVMError) -> NestedExit? {
        guard l2.slot(containing: gpa) == nil else { return nil }
        switch EPTWalker.translate(gpa, access: access, eptp: eptp, physicalAddressBits: vmx.capabilities.physicalAddressBits,
                                   memory: ram, setAccessedDirty: true) {
        case let .success(t):
            if t.physical < UInt64(memory.size) { try mapTouched(t, eptp: eptp, l2: l2) }
            return nil
        case let .failure(failure):
            return NestedExit(failure, guestPhysical: gpa, guestLinear: linear, linearBits: linearBits)
        }
    }

    /// Before L2 runs: the page of its first instruction, and the pages an
    /// event delivery reads without an instruction fetch of its own, the
    /// IDT (its first two pages cover all 256 gates), the GDT's first page
    /// and the stack page below RSP. KVM turns a delivery that meets an
    /// address with no slot into a triple fault, where the SDM has an EPT
    /// violation during delivery; pages EPT12 maps are therefore in EPT02
    /// before they are needed.
    ///
    /// For the event the entry injects, the gate's page must be there: when
    /// EPT12 does not map it, the result is the EPT violation or
    /// misconfiguration the delivery meets (SDM 28.2.4), L2's first exit.
    func mapEntryPages(of state: CPUState, injecting event: DeliveredEvent?, l2: L2Machine, vmcs: VMCS12) throws(KVMError) -> NestedExit? {
        guard case let .ept(eptp) = L2PhysicalMap(vmcs) else { return nil }
        let read = EPTWalker.Access(read: true)
        let code = state.cs.base &+ state.rip, stack = state.ss.base &+ state.gprs[4] &- 1
        // The same pages under the same paging as last time: done already.
        // (A page EPT12 maps only since then is picked up once these change.)
        let key = [eptp, state.cr0, state.cr3, state.cr4, state.efer, state.idtr.base, UInt64(state.idtr.limit),
                   state.gdtr.base, UInt64(state.gdtr.limit), state.tr.base, code >> 12, stack >> 12]
        if l2.premapped != key {
            _ = try mapL2Page(code, access: EPTWalker.Access(fetch: true), state: state, l2: l2, eptp: eptp)
            let idtEnd = state.idtr.base &+ min(UInt64(state.idtr.limit), 0xfff)   // 256 gates at most
            for page in stride(from: state.idtr.base & ~0xfff, through: idtEnd & ~0xfff, by: 0x1000) {
                _ = try mapL2Page(page, access: read, state: state, l2: l2, eptp: eptp)
            }
            // Reads, so that A/D tracking marks a page dirty only when L2 writes it.
            for page in [stack] + stackSwitchPages(state) {
                _ = try mapL2Page(page, access: read, state: state, l2: l2, eptp: eptp)
            }
            if state.protectedMode {
                let gdtEnd = state.gdtr.base &+ UInt64(state.gdtr.limit)
                for page in stride(from: state.gdtr.base & ~0xfff, through: gdtEnd & ~0xfff, by: 0x1000) {
                    _ = try mapL2Page(page, access: read, state: state, l2: l2, eptp: eptp)
                }
            }
            l2.premapped = key
        }
        guard let event else { return nil }
        // The gate (SDM Vol. 3A 6.10-6.14; the IVT in real mode).
        let size: UInt64 = !state.protectedMode ? 4 : state.longModeActive ? 16 : 8
        let offset = UInt64(event.vector) * size
        guard offset + size - 1 <= UInt64(state.idtr.limit) else { return nil }   // beyond the limit: KVM's #GP
        return try mapL2Page(state.idtr.base &+ offset, access: read, state: state, l2: l2, eptp: eptp)
    }
}

/// Guest memory that notes the addresses read from it: the paging-structure
/// entries of a walk, including one that could not be read.
final class ReadLog<Base: GuestMemoryAccess>: GuestMemoryAccess {
    let base: Base
    private(set) var addresses: [UInt64] = []
    init(_ base: Base) { self.base = base }
    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        addresses.append(address)
        return base.read(address, count: count)
    }
    func write(_ address: UInt64, bytes: [UInt8]) -> Bool { false }
}
