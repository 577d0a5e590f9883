import VMXArch

// SDM Vol. 3C 27.4 "Loading MSRs". The VM-entry MSR-load list holds
// `count` 16-byte entries: bits 31:0 MSR index, bits 63:32 reserved, bits
// 127:64 the value. Entries are processed in order; the first bad one fails
// the entry with basic reason 34 and its 1-based index as qualification.

enum MSRLoadCheck {
    static let fsBase: UInt32 = 0xc000_0100
    static let gsBase: UInt32 = 0xc000_0101
    static let smmMonitorCtl: UInt32 = 0x9b
    static let smbase: UInt32 = 0x9e
    /// IA32_BIOS_UPDT_TRIG: loading it on VM entry is refused for
    /// model-specific reasons (27.4, last-but-one rule), as KVM also does.
    static let biosUpdateTrigger: UInt32 = 0x79

    /// True when an entry (first quadword `low`, value `value`) cannot be
    /// loaded. The same rules hold for the VM-exit MSR-load list (28.6).
    static func refuses(low: UInt64, value: UInt64, inSMM: Bool, wrmsrFaults: ((UInt32, UInt64) -> Bool)?) -> Bool {
        if low >> 32 != 0 { return true }                            // bits 63:32 reserved
        let msr = UInt32(truncatingIfNeeded: low)
        if msr == fsBase || msr == gsBase { return true }            // FS/GS base: load the VMCS fields
        if msr >> 8 == 0x8 { return true }                           // x2APIC MSRs 800H-8FFH
        if !inSMM && (msr == smmMonitorCtl || msr == smbase) { return true }  // SMM only
        if msr == biosUpdateTrigger { return true }
        if let faults = wrmsrFaults, faults(msr, value) { return true }  // WRMSR would #GP
        return false
    }

    /// The 1-based index of the first entry that cannot be loaded, or nil.
    /// A count above the recommended maximum of IA32_VMX_MISC (512 · (N+1),
    /// undefined behaviour per A.6) fails at the first entry beyond it; an
    /// entry outside RAM fails at that entry.
    static func firstFailure(_ c: EntryContext) -> Int? {
        let count = Int(c.read32(.entryMSRLoadCount))
        let limit = VMXMisc(rawValue: c.capabilities.misc).maxMSRListEntries
        let base = c.read(.entryMSRLoadAddress)
        for i in 0..<count {
            if i >= limit { return i + 1 }
            let at = base &+ 16 * UInt64(i)
            guard let low = c.memory.load(UInt64.self, at: at), let value = c.memory.load(UInt64.self, at: at &+ 8),
                  !refuses(low: low, value: value, inSMM: c.platform.inSMM, wrmsrFaults: c.platform.wrmsrFaults)
            else { return i + 1 }
        }
        return nil
    }

    static let all: [EntryCheck] = [
        EntryCheck("27.4", "VM-entry MSR-load list", .msrLoad) { c in
            firstFailure(c).map { .fail(qualification: UInt64($0)) } ?? .pass
        },
    ]
}
