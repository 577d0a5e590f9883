import VMXArch

/// Why a VM exit could not complete (SDM Vol. 3C 28.7, "VMX Aborts"): the
/// indicator the processor writes at byte offset 4 of the VMCS region
/// before it shuts down.
public enum VMXAbort: UInt32, Equatable, Sendable {
    /// Saving a guest MSR failed (28.4).
    case savingGuestMSR = 1
    /// Host checking of the PDPTRs failed (28.5.4).
    case hostPDPTE = 2
    /// The current VMCS was corrupted.
    case corruptVMCS = 3
    /// Loading a host MSR failed (28.6).
    case loadingHostMSR = 4
    /// A machine-check event during the exit.
    case machineCheck = 5
    /// The processor was in IA-32e mode and "host address-space size" is 0.
    case hostAddressSpace = 6
}

/// One entry of an MSR area (SDM 25.7.2, 25.8.2): bits 31:0 the MSR index,
/// bits 63:32 reserved, bits 127:64 the value; `address` is the entry's.
public struct MSRAreaEntry: Equatable, Sendable {
    public var address: UInt64
    /// The first quadword: the index and the reserved bits.
    public var low: UInt64
    public var value: UInt64
    public var index: UInt32 { UInt32(truncatingIfNeeded: low) }
    /// Where the value of a stored MSR goes (bits 127:64).
    public var valueAddress: UInt64 { address &+ 8 }

    public init(address: UInt64, low: UInt64, value: UInt64) {
        self.address = address; self.low = low; self.value = value
    }
}

/// The MSR areas of VM entry and exit, processed in order as SDM 27.4, 28.4
/// and 28.6 say: the entries before the first bad one take effect. Pure:
/// the monitor reads and writes the MSRs themselves.
public enum MSRLists {
    /// What one list comes to: the entries to process, in order, and the
    /// abort that stops the list after them, if any.
    public struct Plan: Equatable, Sendable {
        public var entries: [MSRAreaEntry]
        public var abort: VMXAbort?
        public init(entries: [MSRAreaEntry], abort: VMXAbort?) { self.entries = entries; self.abort = abort }
    }

    /// The entries of the area at `address`, up to the first one that
    /// cannot be read; a count beyond IA32_VMX_MISC's maximum is treated as
    /// unreadable from there (A.6 leaves it undefined).
    public static func entries(address: UInt64, count: Int, maximum: Int, memory: some GuestMemoryAccess)
        -> (entries: [MSRAreaEntry], complete: Bool) {
        var entries: [MSRAreaEntry] = []
        entries.reserveCapacity(min(count, maximum))
        for i in 0..<count {
            let at = address &+ 16 &* UInt64(i)
            guard i < maximum, let low = memory.load(UInt64.self, at: at), let value = memory.load(UInt64.self, at: at &+ 8)
            else { return (entries, false) }
            entries.append(MSRAreaEntry(address: at, low: low, value: value))
        }
        return (entries, true)
    }

    /// 28.4, the VM-exit MSR-store list. The entries before the first bad
    /// one take effect, and the bad one is a VMX abort:: an entry with reserved bits set,
    /// an x2APIC MSR (800H-8FFH) or IA32_SMBASE outside SMM cannot be
    /// stored, nor one that cannot be read: abort 1 there. Whether the MSR
    /// itself can be read is the monitor's to find out, in order.
    public static func store(address: UInt64, count: UInt32, maximum: Int, memory: some GuestMemoryAccess) -> Plan {
        let (list, complete) = entries(address: address, count: Int(count), maximum: maximum, memory: memory)
        if let bad = list.firstIndex(where: { $0.low >> 32 != 0 || $0.index >> 8 == 0x8 || $0.index == MSRLoadCheck.smbase }) {
            return Plan(entries: Array(list[..<bad]), abort: .savingGuestMSR)
        }
        return Plan(entries: list, abort: complete ? nil : .savingGuestMSR)
    }

    /// 28.6, the VM-exit MSR-load list, with the rules of VM entry's list (27.4:
    /// reserved bits, FS/GS base, x2APIC MSRs, the SMM MSRs outside SMM,
    /// the microcode-update trigger) and any entry L1's own WRMSR could not
    /// make (`wrmsrFaults`), or that cannot be read: abort 4 there.
    public static func load(address: UInt64, count: UInt32, maximum: Int, memory: some GuestMemoryAccess,
                            wrmsrFaults: ((UInt32, UInt64) -> Bool)? = nil) -> Plan {
        let (list, complete) = entries(address: address, count: Int(count), maximum: maximum, memory: memory)
        if let bad = list.firstIndex(where: { MSRLoadCheck.refuses(low: $0.low, value: $0.value, inSMM: false, wrmsrFaults: wrmsrFaults) }) {
            return Plan(entries: Array(list[..<bad]), abort: .loadingHostMSR)
        }
        return Plan(entries: list, abort: complete ? nil : .loadingHostMSR)
    }
}
