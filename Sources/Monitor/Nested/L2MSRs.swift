#if canImport(Glibc)
import Glibc
#endif
import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// L2's MSRs: the guest-state fields KVM keeps in MSRs, L1's host MSRs at
/// exit, the MSR lists (SDM 25.7.2, 25.8.2) and the MSR filter made from
/// L1's MSR bitmaps.
extension Machine {
    /// Into L2's vCPU at entry (SDM 27.3.2.1); only values that changed are
    /// written. KVM stops at an MSR it refuses (DEBUGCTL bits this host
    /// lacks), so each is written alone and applied if it can be.
    func loadGuestMSRs(_ l2: L2Machine, _ values: [MSRValue]) {
        for m in values where l2.loadedMSRs[m.index] != m.value && l2.vcpu.setMSRs([(m.index, m.value)]) == 1 {
            l2.loadedMSRs[m.index] = m.value
        }
    }

    /// L2's values of the MSR-held guest fields the exit controls save (SDM
    /// 28.3.3). L0 knows the values it loaded at entry and those L2 wrote
    /// through it (L2's filter sends those writes here); KVM is asked for the rest.
    func guestMSRValues(_ l2: L2Machine, saving controls: VMExitControls) -> [MSRValue] {
        // One pass into a list sized up front (a dictionary cost more than
        // the rest of it): at every reflected exit (docs/PERFORMANCE.md).
        var values: [MSRValue] = []
        values.reserveCapacity(GuestStateMSRs.fields.count)
        var missing: [UInt32] = []
        for f in GuestStateMSRs.fields where controls.isSuperset(of: f.save) {
            if let value = l2.loadedMSRs[f.index] { values.append(MSRValue(index: f.index, value: value)) } else { missing.append(f.index) }
        }
        if !missing.isEmpty {
            for (index, value) in zip(missing, l2.vcpu.getMSRs(missing)) {
                l2.loadedMSRs[index] = value
                if let value { values.append(MSRValue(index: index, value: value)) }
            }
        }
        return values
    }

    /// L1's host MSRs at exit (SDM 28.5.1), each KVM accepts. Only those
    /// whose value L1's vCPU may not hold already are written: L0 knows
    /// what it wrote last, and L1's own writes reach it (`hostStateMSRs`).
    func loadHostMSRs(_ values: [MSRValue]) {
        // Nothing to write, the usual case: no list is built.
        guard values.contains(where: { l1MSRs[$0.index] != $0.value }) else { return }
        let pairs = values.filter { l1MSRs[$0.index] != $0.value }.map { (index: $0.index, value: $0.value) }
        if vcpu.setMSRs(pairs) == pairs.count {
            for pair in pairs { l1MSRs[pair.index] = pair.value }
            return
        }
        for pair in pairs {                                       // apply what KVM accepts
            l1MSRs[pair.index] = vcpu.setMSRs([pair]) == 1 ? pair.value : nil
        }
    }

    /// The most entries an MSR list may have (IA32_VMX_MISC, SDM A.6).
    var maxMSRListEntries: Int { VMXMisc(rawValue: vmx.capabilities.misc).maxMSRListEntries }

    /// MSRs that KVM lets its host write but not its guest: a guest WRMSR
    /// of these #GPs (IA32_ARCH_CAPABILITIES, IA32_PERF_CAPABILITIES), so
    /// an MSR-load list entry for one fails as the guest's WRMSR would (SDM 27.4, 28.6).
    static let hostOnlyMSRs: Set<UInt32> = [0x10a, 0x345]
    /// MSRs whose guest writes KVM ignores (IA32_UCODE_REV): an MSR-load
    /// list entry for one is ignored too, never written with host privilege.
    static let guestIgnoredMSRs: Set<UInt32> = [0x8b]

    /// Would a guest's own WRMSR of `index` fault? The rule the MSR-load
    /// lists are held to: L1's at exit (28.6), L2's at entry (27.4).
    static func guestWRMSRFaults(_ index: UInt32, _ value: UInt64) -> Bool { hostOnlyMSRs.contains(index) }

    /// Loads MSR-list entries into L1, in order: MSRs L0 emulates through
    /// L0 (as L1's WRMSR of them), ignored ones not at all, the rest through
    /// KVM in runs. False at the first one refused.
    func loadL1MSRs(_ entries: [MSRAreaEntry]) -> Bool {
        var run: [(index: UInt32, value: UInt64)] = []
        func flush() -> Bool {
            defer { run.removeAll(keepingCapacity: true) }
            for entry in run { l1MSRs[entry.index] = nil }        // no longer known
            return vcpu.setMSRs(run) == run.count
        }
        for entry in entries where !Self.guestIgnoredMSRs.contains(entry.index) {
            if Self.emulatedMSRs.contains(where: { $0.contains(entry.index) }) {
                guard flush(), writeMSR(entry.index, entry.value) else { return false }
            } else {
                run.append((entry.index, entry.value))
            }
        }
        return flush()
    }

    /// Loads the VM-entry MSR-load list into L2's vCPU (SDM 27.4) as L2's
    /// own WRMSRs would: the index of the first entry refused, or nil.
    func loadL2MSRs(_ entries: [MSRAreaEntry], into l2: L2Machine) -> Int? {
        let refused = entries.firstIndex { Self.guestWRMSRFaults($0.index, $0.value) } ?? entries.count
        let written = entries[..<refused].indices.filter { !Self.guestIgnoredMSRs.contains(entries[$0].index) }
        let loaded = written.isEmpty ? 0 : l2.vcpu.setMSRs(written.map { (index: entries[$0].index, value: entries[$0].value) })
        for entry in entries[..<refused] { l2.loadedMSRs[entry.index] = nil }   // the cache no longer knows them
        if loaded < written.count { return written[loaded] }
        return refused < entries.count ? refused : nil
    }

    /// L1's MSR bitmaps become the L2 VM's MSR filter (SDM 25.6.9): the
    /// accesses L1 intercepts exit to L0, which reflects them; without
    /// bitmaps every access does. MSRs L0 emulates for L1's platform exit too,
    /// so L0 can answer them as L1's platform would. Rebuilt only when the
    /// bitmap (or its use) changed since the last entry.
    func updateMSRFilter(of l2: L2Machine, for vmcs: VMCS12) throws(KVMError) {
        let useBitmaps = vmcs.proc.contains(.useMSRBitmaps)
        // A bitmap that is not RAM reads as all ones: everything exits.
        let source = useBitmaps ? ram.memory.bytes(at: vmcs.read(.msrBitmap) ?? 0, count: 4096) : nil
        // Unchanged since the filter was built: compared in place, without
        // a copy (every entry asks).
        if let built = l2.msrFilterBitmap, built.useBitmaps == useBitmaps,
           !useBitmaps || built.bytes.withUnsafeBytes({ old in
               guard let source else { return old.allSatisfy { $0 == 0xff } }
               guard let a = old.baseAddress, let b = source.baseAddress, old.count == 4096 else { return false }
               return memcmp(a, b, 4096) == 0
           }) {
            return
        }
        let bitmap = useBitmaps ? source.map { Array($0) } ?? [UInt8](repeating: 0xff, count: 4096) : []
        l2.msrFilterBitmap = (useBitmaps, bitmap)
        guard useBitmaps else {
            // KVM refuses a deny-everything filter without ranges (EINVAL): give
            // it one range that denies too.
            return try l2.vm.setMSRFilter(defaultAllow: false, ranges: [.init(base: 0, reads: true, writes: true, allow: [0])])
        }
        func allow(_ offset: Int) -> [UInt8] { bitmap[offset..<offset + 1024].map { ~$0 } }
        var readLow = allow(0), writeLow = allow(2048)
        let apicBase = Int(MSRIndex.apicBase)
        readLow[apicBase / 8] &= ~UInt8(1 << (apicBase % 8))
        writeLow[apicBase / 8] &= ~UInt8(1 << (apicBase % 8))
        // L2's writes to the MSRs that hold guest-state fields come to L0,
        // which then knows their values at exit without asking KVM.
        for index in GuestStateMSRs.indices { writeLow[Int(index) / 8] &= ~UInt8(1 << (index % 8)) }
        try l2.vm.setMSRFilter(defaultAllow: false, ranges: [
            .init(base: 0, reads: true, writes: false, allow: readLow),
            .init(base: 0, reads: false, writes: true, allow: writeLow),
            .init(base: 0xc000_0000, reads: true, writes: false, allow: allow(1024)),
            .init(base: 0xc000_0000, reads: false, writes: true, allow: allow(3072)),
        ])
    }
}

/// MSR values L0 knows a vCPU holds, by index: a handful at most (the
/// guest-state and host-state MSRs), kept in a list searched in order,
/// which costs less than a dictionary's hashing at every exit and entry
/// (docs/PERFORMANCE.md). Setting nil forgets a value.
struct MSRValues {
    private var indices: [UInt32] = []
    private var values: [UInt64] = []

    subscript(index: UInt32) -> UInt64? {
        get {
            guard let i = indices.firstIndex(of: index) else { return nil }
            return values[i]
        }
        set {
            if let i = indices.firstIndex(of: index) {
                if let newValue {
                    values[i] = newValue
                } else {
                    indices.remove(at: i)
                    values.remove(at: i)
                }
            } else if let newValue {
                indices.append(index)
                values.append(newValue)
            }
        }
    }
}
