import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// When L0 builds EPT02, the L2 VM's memory slots, from L1's EPT12
/// (docs/ARCHITECTURE.md, "EPT02"; the second axis of `terrapin experiment
/// paging`, docs/SHADOW.md).
public enum EPT02Policy: String, Sendable, CaseIterable {
    /// A run of EPT12 is mapped when L2 first touches it (an EPT02 fault),
    /// coalesced with its neighbours that are contiguous in both spaces;
    /// a single-page run brings the rest of its 2 MiB region (`mapTouched`).
    case lazy
    /// Every executable run of EPT12 is mapped at the first VM entry after VMPTRLD of
    /// a VMCS with another EPTP, or after INVEPT drops the slots; L2 then
    /// faults only where EPT12 changed since. EPTPs with accessed and dirty
    /// flags stay lazy: a slot built ahead would claim an access L2 never
    /// made (SDM 29.3.5 sets the flags on access).
    case eager
}

/// EPT02: the L2 VM's memory slots, built from L1's EPT12 on demand
/// (docs/ARCHITECTURE.md; SDM Vol. 3C 29.3).
extension Machine {
    /// EPT02: rebuilt whenever the strategy (or its EPTP) changes. Without
    /// EPT, L2 sees L1-physical memory directly: one slot covering L1's RAM.
    /// With EPT, slots are built as L2 touches pages, or all at once
    /// (`EPT02Policy.eager`).
    func prepareMemory(of l2: L2Machine, for vmcs: VMCS12) throws(KVMError) {
        let map = L2PhysicalMap(vmcs)
        if l2.builtFor == map { return }
        try l2.dropAll()
        l2.builtFor = map
        switch map {
        case .identity: try mapIdentity(around: 0, l2: l2)
        case let .ept(eptp):
            if ept02Policy == .eager && !EPTWalker.accessedDirtyEnabled(eptp) { try mapAll(eptp: eptp, l2: l2) }
        }
    }

    /// The eager policy: every leaf of EPT12 that `mapLeaves` takes goes
    /// into EPT02 through `mapRun`, as a touch of it would put it there.
    func mapAll(eptp: UInt64, l2: L2Machine) throws(KVMError) {
        try mapLeaves(from: 0, to: 1 << 48, eptp: eptp, l2: l2)
    }

    /// The leaves of EPT12 in L2-physical [from, to) that have no slot,
    /// each through `mapRun`. Leaves that fail the walk (misconfigured,
    /// execute-only) or point outside L1's RAM stay for L2's touch to
    /// report, and so do leaves without execute permission: a slot cannot
    /// forbid fetches, so mapping one ahead would let L2 run code where
    /// EPT12 forbids it before any data access (docs/ARCHITECTURE.md,
    /// deviations). It stops at half the slot capacity, so that a
    /// fragmented EPT12 leaves room for the lazy rest.
    func mapLeaves(from: UInt64, to: UInt64, eptp: UInt64, l2: L2Machine) throws(KVMError) {
        let bits = vmx.capabilities.physicalAddressBits
        var at = from
        while at < to, l2.slots.count < l2.slots.capacity / 2,
              let leaf = EPTWalker.nextLeaf(atOrAbove: at, eptp: eptp, physicalAddressBits: bits, memory: ram),
              leaf.start < to {
            if let s = l2.slot(containing: leaf.start) {
                at = s.end
                continue
            }
            if case let .success(t) = EPTWalker.translate(leaf.start, access: EPTWalker.Access(read: true, fetch: true),
                                                           eptp: eptp, physicalAddressBits: bits, memory: ram) {
                try mapRun(t, eptp: eptp, l2: l2)
            }
            at = l2.slot(containing: leaf.start)?.end ?? leaf.end
        }
    }

    /// The lazy policy's answer to L2's touch of `t`: its run, and when
    /// that is a single 4 KiB page (EPT12 is fragmented there, and its
    /// runs cannot be coalesced), the other leaves of its 2 MiB region too,
    /// as KVM's shadow MMU prefetches neighbouring entries. Without that,
    /// L2 can turn paging on, or switch to tables it did not write, without
    /// an exit, and KVM turns its walk of a table page with no slot into a
    /// triple fault (docs/ARCHITECTURE.md, "EPT02"). Not with A/D flags,
    /// which must see each access.
    func mapTouched(_ t: EPTWalker.Translation, eptp: UInt64, l2: L2Machine) throws(KVMError) {
        try mapRun(t, eptp: eptp, l2: l2)
        let gpa = t.address
        guard t.pageSize == 0x1000, !EPTWalker.accessedDirtyEnabled(eptp),
              let s = l2.slot(containing: gpa), s.size == 0x1000 else { return }
        let region = gpa & ~UInt64(0x1f_ffff)
        try mapLeaves(from: region, to: region + 0x20_0000, eptp: eptp, l2: l2)
    }

    /// Without EPT: the free stretch of L1's RAM around `gpa` onto itself,
    /// in one slot but for the patched copies of image code pages, which
    /// get theirs first (docs/PATCHING.md). At entry that is all of RAM.
    func mapIdentity(around gpa: UInt64, l2: L2Machine) throws(KVMError) {
        let ramEnd = UInt64(memory.size)
        let (floor, limit) = l2.slots.gap(around: gpa)
        _ = try mapPatchedCopies(floor, min(limit, ramEnd), l1Start: floor, l2: l2)
        var at = floor
        while at < min(limit, ramEnd) {
            if let s = l2.slot(containing: at) {
                at = s.end
                continue
            }
            let end = min(l2.slots.gap(around: at).limit, limit, ramEnd)
            try l2.map(base: at, size: end - at, l1: at, readOnly: false, memory: memory)
            at = end
        }
    }

    /// INVEPT drops the EPT02 slots built from the EPTPs it names, so the
    /// next L2 access rebuilds them from the current EPT12 (SDM 29.4.3.1).
    /// INVVPID has nothing to drop: L0 keeps no linear translations for L2.
    func invalidate(_ invalidation: Invalidation) {
        guard let l2 = l2Machine, case let .ept(eptp)? = l2.builtFor else { return }
        let addressMask: UInt64 = ~0xfff
        switch invalidation {
        case let .eptSingleContext(target) where target & addressMask != eptp & addressMask:
            return
        case .eptSingleContext, .eptAllContexts:
            try? l2.dropAll()
            l2.builtFor = nil
        default:
            return
        }
    }


    /// An L2 access to an address with no slot (or a write to a read-only
    /// one): map the EPT12 run it falls in, reflect an EPT violation or
    /// misconfiguration, or emulate L1's device behind it.
    func handleL2Memory(at gpa: UInt64, access: EPTWalker.Access, mmio: MMIOExit?, l2: L2Machine,
                        note: inout ExitNote) -> RunOutcome? {
        guard let vmcs = vmx.current else { return .unhandledExit("L2 memory access without VMCS") }
        guard case let .ept(eptp) = L2PhysicalMap(vmcs) else {
            // No EPT: L2-physical is L1-physical; beyond RAM are L1's devices.
            guard gpa < UInt64(memory.size) else {
                guard let mmio else { return .unhandledExit("L2 fetch from \(hex(gpa)), outside L1's RAM") }
                return handleMMIO(mmio, on: l2.vcpu, note: &note)
            }
            // In RAM: a patched copy L2 writes to, or the hole a dropped copy left.
            do {
                try dropReadOnlySlot(at: gpa, write: access.write, l2: l2)
                try mapIdentity(around: gpa, l2: l2)
            } catch {
                return .unhandledExit("L2 slot: \(error)")
            }
            replay(mmio, at: gpa, l2: l2)
            return nil
        }
        switch EPTWalker.translate(gpa, access: access, eptp: eptp, physicalAddressBits: vmx.capabilities.physicalAddressBits,
                                   memory: ram, setAccessedDirty: true) {
        case let .failure(failure):
            guard let state = stateAtFaultingAccess(mmio, gpa: gpa, l2: l2) else {
                return .unhandledExit("cannot find the L2 store to \(hex(gpa)) that KVM retired")
            }
            // Table 28-7: bits 7 and 8 with the guest-linear address, when the
            // access behind the GPA is found (a fetch at RIP, or a decodable MOV).
            let linear = linearAddress(of: mmio, gpa: gpa, state: state)
            return reflect(NestedExit(failure, guestPhysical: gpa, guestLinear: linear ?? 0,
                                      linearBits: linear == nil ? 0 : EPTWalker.linearAccessBits),
                           state: state, note: &note)
        case let .success(t):
            guard t.physical < UInt64(memory.size) else {
                // EPT12 points at one of L1's device addresses: that device answers.
                guard var m = mmio else { return .unhandledExit("L2 fetch from L1 device address \(hex(t.physical))") }
                m.address = t.physical
                return handleMMIO(m, on: l2.vcpu, note: &note)
            }
            do {
                // A write EPT12 allows, to a read-only slot: the page was clean
                // under A/D tracking and is now dirty. Its slot is rebuilt.
                try dropReadOnlySlot(at: gpa, write: access.write, l2: l2)
                try mapTouched(t, eptp: eptp, l2: l2)
            } catch {
                return .unhandledExit("EPT02 slot: \(error)")
            }
            note.flags.insert(.ept02Fault)
            note.value = t.physical
            replay(mmio, at: t.physical, l2: l2)
            return nil
        }
    }

    /// A write to a read-only slot that L1 allows: the slot goes, to be
    /// rebuilt writable. A patched copy L2 writes to is not made again: L2
    /// gets L1's page from now on (docs/PATCHING.md).
    func dropReadOnlySlot(at gpa: UInt64, write: Bool, l2: L2Machine) throws(KVMError) {
        guard write, let existing = l2.slot(containing: gpa), existing.readOnly else { return }
        if l2.copySlot(containing: gpa) != nil { l2.unpatched.insert(existing.base) }
        try l2.unmap(existing)
    }

    /// Completes an MMIO exit against L1 RAM at `physical`, once the slot
    /// it missed exists: the exit already carries a store's data.
    func replay(_ mmio: MMIOExit?, at physical: UInt64, l2: L2Machine) {
        guard let m = mmio else { return }
        if m.isWrite {
            for i in 0..<Int(m.length) {
                _ = memory.store(UInt8(truncatingIfNeeded: m.data >> (8 * UInt64(i))), at: physical + UInt64(i))
            }
        } else {
            var v: UInt64 = 0
            for i in 0..<Int(m.length) { v |= UInt64(memory.load(UInt8.self, at: physical + UInt64(i)) ?? 0xff) << (8 * UInt64(i)) }
            l2.vcpu.completeMMIORead(v)
        }
    }

    /// L2's state at the instruction that made `mmio`, which an EPT violation
    /// must report (SDM 28.2). KVM leaves a load at its instruction but
    /// retires a store before reporting it, so a store is found again by
    /// decoding backwards from RIP (`VMXDecoder.retiredStoreLength`). KVM's
    /// pending completion is then flushed; L1 re-supplies the results.
    func stateAtFaultingAccess(_ mmio: MMIOExit?, gpa: UInt64, l2: L2Machine) -> CPUState? {
        var state = l2State
        guard let m = mmio else { return state }
        if m.isWrite {
            let memory = L2PhysicalMemory(machine: self)
            let at = state
            guard let length = VMXDecoder.retiredStoreLength(
                endingAt: at, address: gpa, size: Int(m.length),
                fetch: { a, n in
                    if case let .success(b) = PageWalker.readLinear(a, count: n, access: MemoryAccess(), state: at, memory: memory) { return b }
                    return nil
                },
                translate: { a in
                    if case let .success(p) = PageWalker.translate(a, access: MemoryAccess(), state: at, memory: memory,
                                                                    setAccessedDirty: false) { return p }
                    return nil
                }) else { return nil }
            state.rip &-= UInt64(length)
        }
        completePending(l2)
        return state
    }

    /// The linear address whose translation is `gpa`, for L2's access at
    /// `state` (at the instruction, before it retires): the instruction
    /// fetch for a fetch, else the memory operand of the MOV behind the MMIO
    /// exit. nil when neither translates to the page of `gpa`.
    func linearAddress(of mmio: MMIOExit?, gpa: UInt64, state: CPUState) -> UInt64? {
        let memory = L2PhysicalMemory(machine: self)
        let start: UInt64, size: Int
        if let m = mmio {
            let bytes = InstructionFetch.bytes(at: state.cs.base &+ state.rip, cpu: state, memory: memory)
            guard let move = VMXDecoder.decodeMemoryMove(bytes, state: state),
                  case let .success(la) = move.operand.linearAddress(state: state, instructionLength: move.length,
                                                                      size: Int(m.length), write: m.isWrite) else { return nil }
            (start, size) = (la, move.size)
        } else {
            (start, size) = (state.cs.base &+ state.rip, InstructionFetch.maximumLength)
        }
        // The access may cross a page: the page of `gpa` is its first or its last.
        for page in [start & ~0xfff, (start &+ UInt64(size - 1)) & ~0xfff] {
            let linear = page | (gpa & 0xfff)
            if case let .success(p) = PageWalker.translate(linear, access: MemoryAccess(), state: state, memory: memory,
                                                            setAccessedDirty: false), p & ~0xfff == gpa & ~0xfff {
                return state.mode64 ? linear : linear & 0xffff_ffff
            }
        }
        return nil
    }

    /// Maps the run of EPT12 pages starting at the faulting page that are
    /// contiguous in both address spaces with the same permissions, up to the
    /// next existing slot: a flat mapping costs a handful of slots.
    ///
    /// With accessed/dirty flags enabled (SDM 29.3.5) every leaf gets its own
    /// slot, mapped when L2 first touches it (which sets A), and read-only
    /// until its first write (which sets D and rebuilds the slot writable).
    ///
    /// The slot never overlaps another: slots built from a stale EPT12 may
    /// stay until INVEPT (SDM 29.4.3.1), so a run starts after the nearest
    /// slot below the faulting address and ends before the nearest above.
    /// It ends at the end of L1's RAM too: the rest of a large leaf is L1's
    /// unbacked physical space, which an access then reaches as MMIO.
    func mapRun(_ first: EPTWalker.Translation, eptp: UInt64, l2: L2Machine) throws(KVMError) {
        let tracking = EPTWalker.accessedDirtyEnabled(eptp)
        let gpa = first.address
        let ramEnd = UInt64(memory.size)
        guard first.frame < ramEnd else { return }
        let (floor, limit) = l2.slots.gap(around: gpa)
        var size = first.pageSize
        while !tracking, size < 1 << 30, first.pageBase + size < limit {
            let next = first.pageBase + size
            guard case let .success(t) = EPTWalker.translate(next, access: EPTWalker.Access(read: true), eptp: eptp,
                                                             physicalAddressBits: vmx.capabilities.physicalAddressBits,
                                                             memory: ram),
                  t.frame == first.frame + size, t.write == first.write, t.read == first.read,
                  t.frame + t.pageSize <= UInt64(memory.size), next + t.pageSize <= limit else { break }
            size += t.pageSize
        }
        let readOnly = !first.write || (tracking && !first.dirty)
        var start = max(first.pageBase, floor)
        var end = min(first.pageBase + size, limit, first.pageBase + (ramEnd - first.frame))
        guard end > start else { return }
        // Patched copies of image code pages come first; the run then ends
        // at them (docs/PATCHING.md).
        if try mapPatchedCopies(start, end, l1Start: first.frame + (start - first.pageBase), l2: l2) {
            guard l2.slot(containing: gpa) == nil else { return }
            let (below, above) = l2.slots.gap(around: gpa)
            start = max(start, below)
            end = min(end, above)
        }
        try l2.map(base: start, size: end - start, l1: first.frame + (start - first.pageBase), readOnly: readOnly, memory: memory)
    }
}

/// L2-physical memory through EPT12, for reading L2's page tables and code.
/// Read-only unless `writable`: L0's own looks at L2's paging must not set
/// accessed flags, which a walk would try to; a delivery L0 carries out for
/// L2 writes its frame (`InterruptDelivery`), with EPT12's permission.
struct L2PhysicalMemory: GuestMemoryAccess {
    let machine: Machine
    var writable = false

    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        guard let vmcs = machine.vmx.current else { return nil }
        return L2PhysicalMap(vmcs).read(address, count: count, physicalAddressBits: machine.vmx.capabilities.physicalAddressBits,
                                        memory: machine.ram)
    }

    func write(_ address: UInt64, bytes: [UInt8]) -> Bool {
        guard writable, let vmcs = machine.vmx.current else { return false }
        return L2PhysicalMap(vmcs).write(address, bytes: bytes, physicalAddressBits: machine.vmx.capabilities.physicalAddressBits,
                                         memory: machine.ram)
    }
}

/// L2-physical memory as L2 runs on it: through the EPT02 slot that maps an
/// address, where one does (a lookup in the slot map and a load from L1's
/// RAM; for a patched copy, L1's own bytes under it), and through EPT12
/// (`L2PhysicalMemory`) elsewhere. Read-only. For the bytes of an
/// instruction L2 has just executed, which came through those slots: a walk
/// of EPT12 for every page-table and code read cost about 60,000
/// instructions per reflected OUT (docs/PERFORMANCE.md).
struct L2SlotMemory: GuestMemoryAccess {
    let machine: Machine
    let l2: L2Machine

    private func l1Address(_ address: UInt64, count: Int) -> UInt64? {
        guard count >= 0, let s = l2.slot(containing: address), UInt64(count) <= s.end &- address else { return nil }
        return s.l1 &+ (address &- s.base)
    }

    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        if let at = l1Address(address, count: count) { return machine.ram.read(at, count: count) }
        return L2PhysicalMemory(machine: machine).read(address, count: count)
    }

    func write(_ address: UInt64, bytes: [UInt8]) -> Bool { false }

    func load<T: FixedWidthInteger>(_: T.Type, at address: UInt64) -> T? {
        if let at = l1Address(address, count: MemoryLayout<T>.size) { return machine.ram.load(T.self, at: at) }
        return L2PhysicalMemory(machine: machine).load(T.self, at: address)
    }

    func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) -> Bool { false }
}
