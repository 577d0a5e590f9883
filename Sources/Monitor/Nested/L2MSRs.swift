import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// L2's MSRs: the guest-state fields KVM keeps in MSRs, L1's host MSRs at
/// exit, the MSR lists (SDM 25.7.2, 25.8.2) and the MSR filter made from
/// L1's MSR bitmaps.
extension Machine {
    /// The guest-state fields KVM holds as MSRs (SDM 25.4.1), with the entry
    /// control that loads each and the exit control that saves it; the
    /// SYSENTER MSRs are always loaded and saved.
    static let guestStateMSRFields: [(index: UInt32, field: VMCSField, load: VMEntryControls, save: VMExitControls)] = [
        (MSRIndex.sysenterCS, .guestIA32SysenterCS, [], []),
        (MSRIndex.sysenterESP, .guestIA32SysenterESP, [], []),
        (MSRIndex.sysenterEIP, .guestIA32SysenterEIP, [], []),
        (MSRIndex.pat, .guestIA32PAT, .loadPAT, .savePAT),
        (MSRIndex.debugctl, .guestIA32Debugctl, .loadDebugControls, .saveDebugControls),
    ]
    static let guestStateMSRs = Set(guestStateMSRFields.map(\.index))

    /// Into L2's vCPU at entry (SDM 27.3.2.1); only values that changed are written.
    func loadGuestMSRs(_ l2: L2Machine, vmcs: VMCS12) {
        let wanted = Self.guestStateMSRFields.filter { vmcs.entryControls.isSuperset(of: $0.load) }
            .map { (index: $0.index, value: vmcs.read($0.field) ?? 0) }
        // KVM stops at an MSR it refuses (DEBUGCTL bits this host lacks), so
        // each is written alone and applied if it can be.
        for pair in wanted where l2.loadedMSRs[pair.index] != pair.value && l2.vcpu.setMSRs([pair]) == 1 {
            l2.loadedMSRs[pair.index] = pair.value
        }
    }

    /// Back into the guest-state area at VM exit (SDM 28.3.3).
    func saveGuestMSRs(_ l2: L2Machine, into vmcs: inout VMCS12) {
        let fields = Self.guestStateMSRFields.filter { vmcs.exitControls.isSuperset(of: $0.save) }
        // L0 knows the values it loaded at entry and those L2 wrote through
        // it (L2's filter sends those writes here); KVM is asked for the rest.
        let missing = fields.map(\.index).filter { l2.loadedMSRs[$0] == nil }
        if !missing.isEmpty {
            for (index, value) in zip(missing, l2.vcpu.getMSRs(missing)) { l2.loadedMSRs[index] = value }
        }
        for f in fields { if let value = l2.loadedMSRs[f.index] { vmcs.write(f.field, value) } }
    }

    /// L1's host SYSENTER MSRs, and PAT when "load IA32_PAT" is set; DEBUGCTL
    /// is cleared (SDM 28.5.1).
    func loadHostMSRs(_ vmcs: VMCS12) {
        var pairs: [(index: UInt32, value: UInt64)] = [
            (MSRIndex.sysenterCS, vmcs.read(.hostIA32SysenterCS) ?? 0),
            (MSRIndex.sysenterESP, vmcs.read(.hostIA32SysenterESP) ?? 0),
            (MSRIndex.sysenterEIP, vmcs.read(.hostIA32SysenterEIP) ?? 0),
            (MSRIndex.debugctl, 0),
        ]
        if vmcs.exitControls.contains(.loadPAT) { pairs.append((MSRIndex.pat, vmcs.read(.hostIA32PAT) ?? 0)) }
        if vcpu.setMSRs(pairs) < pairs.count {
            for pair in pairs { _ = vcpu.setMSRs([pair]) }        // apply what KVM accepts
        }
    }

    /// The most entries an MSR list may have (IA32_VMX_MISC, SDM A.6).
    var maxMSRListEntries: Int { VMXMisc(rawValue: vmx.capabilities.misc).maxMSRListEntries }

    /// Loads MSR-list entries into L1, in order: MSRs L0 emulates through
    /// L0, the rest through KVM in runs. False at the first one refused.
    func loadL1MSRs(_ entries: [MSRAreaEntry]) -> Bool {
        var run: [(index: UInt32, value: UInt64)] = []
        func flush() -> Bool {
            defer { run.removeAll(keepingCapacity: true) }
            return vcpu.setMSRs(run) == run.count
        }
        for entry in entries {
            if Self.emulatedMSRs.contains(where: { $0.contains(entry.index) }) {
                guard flush(), writeMSR(entry.index, entry.value) else { return false }
            } else {
                run.append((entry.index, entry.value))
            }
        }
        return flush()
    }

    /// L1's MSR bitmaps become the L2 VM's MSR filter (SDM 25.6.9): the
    /// accesses L1 intercepts exit to L0, which reflects them; without
    /// bitmaps every access does. MSRs L0 emulates for L1's platform exit too,
    /// so L0 can answer them as L1's platform would. Rebuilt only when the
    /// bitmap (or its use) changed since the last entry.
    func updateMSRFilter(of l2: L2Machine, for vmcs: VMCS12) throws(KVMError) {
        let useBitmaps = vmcs.proc.contains(.useMSRBitmaps)
        // A bitmap that is not RAM reads as all ones: everything exits.
        let bitmap = useBitmaps ? (ram.read(vmcs.read(.msrBitmap) ?? 0, count: 4096) ?? [UInt8](repeating: 0xff, count: 4096)) : []
        var key: UInt64 = useBitmaps ? 0xcbf2_9ce4_8422_2325 : 0
        for b in bitmap { key = (key ^ UInt64(b)) &* 0x100_0000_01b3 }       // FNV-1a
        guard key != l2.msrFilterKey else { return }
        l2.msrFilterKey = key
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
        for index in Self.guestStateMSRs { writeLow[Int(index) / 8] &= ~UInt8(1 << (index % 8)) }
        try l2.vm.setMSRFilter(defaultAllow: false, ranges: [
            .init(base: 0, reads: true, writes: false, allow: readLow),
            .init(base: 0, reads: false, writes: true, allow: writeLow),
            .init(base: 0xc000_0000, reads: true, writes: false, allow: allow(1024)),
            .init(base: 0xc000_0000, reads: false, writes: true, allow: allow(3072)),
        ])
    }
}
