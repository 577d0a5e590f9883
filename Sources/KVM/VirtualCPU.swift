import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// What a monitor needs from a vCPU, in Swift types: its state, one run,
/// the completion of the exit it returned, guest debug, MSRs, interrupt
/// injection and a kicker. `VCPU` is the KVM one; tests drive a monitor with
/// a fake that returns scripted exits (docs/ARCHITECTURE.md, "The vCPU seam").
public protocol VirtualCPU: AnyObject {
    var id: UInt32 { get }
    /// The state as of the last exit. Setting a part makes the next run load
    /// it (KVM: sync regs marked dirty).
    var registers: Registers { get set }
    /// `registers.rflags`, without converting the rest.
    var rflags: UInt64 { get }
    var specialRegisters: SpecialRegisters { get set }
    /// A number that changes whenever `specialRegisters` may have changed
    /// (a run, a write): a value converted from them stays good while it
    /// is the same. Different vCPUs may have the same numbers.
    var specialRegistersVersion: UInt64 { get }
    var events: VCPUEvents { get set }

    /// One run of the guest until its next exit. A kick ends it with `.interrupted`.
    func runOnce() throws(KVMError) -> VCPUExit
    /// Completes what the last exit left pending (an IN or MMIO read, an
    /// MSR access) without running a guest instruction.
    func finishPendingExit()

    /// Element `index` of the current string OUT's data, nil past its end.
    func ioOutputElement(_ index: Int) -> UInt32?
    /// Answers an IN: `value` for element `index` of the current I/O exit.
    func completeIOIn(_ value: UInt32, element index: Int)
    /// Answers an MMIO read with the low bytes of `value`.
    func completeMMIORead(_ value: UInt64)
    /// Answers an RDMSR/WRMSR exit; `fault` raises #GP in the guest.
    func completeMSR(data: UInt64, fault: Bool)

    /// Hardware breakpoints and single-stepping (`debugRegisters`: DR0-DR3,
    /// two unused, DR6, DR7).
    func setGuestDebug(_ control: GuestDebugControl, debugRegisters: [UInt64]) throws(KVMError)
    /// The values of `indices`, nil from the first one that cannot be read.
    func getMSRs(_ indices: [UInt32]) -> [UInt64?]
    /// Writes the pairs in order; returns how many were taken.
    func setMSRs(_ pairs: [(index: UInt32, value: UInt64)]) -> Int
    /// The guest TSC frequency.
    func tscKHz() throws(KVMError) -> UInt64
    /// The guest's DR6 and DR7, as its MOV from DR reads them, and setting them.
    func debugRegisters() throws(KVMError) -> DebugRegisters
    func setDebugRegisters(_ value: DebugRegisters) throws(KVMError)

    /// Queues external interrupt `vector` (valid when `readyForInterruptInjection`).
    func injectInterrupt(_ vector: UInt8) throws(KVMError)
    var requestInterruptWindow: Bool { get set }
    var readyForInterruptInjection: Bool { get }

    /// A handle that forces this vCPU out of a run from another thread.
    /// Created on the thread that runs the vCPU.
    func makeKicker() throws(KVMError) -> any Kicker
}

extension VirtualCPU {
    public var rflags: UInt64 { registers.rflags }
    public func completeMSR(fault: Bool) { completeMSR(data: 0, fault: fault) }
    public func setGuestDebug(_ control: GuestDebugControl) throws(KVMError) {
        try setGuestDebug(control, debugRegisters: [])
    }
}

/// Forces a vCPU out of its run; safe to call from any thread.
public protocol Kicker: Sendable {
    func kick()
}

extension VCPUKicker: Kicker {}

extension VCPU: VirtualCPU {
    public var registers: Registers {
        @inline(__always) get { Registers(sync.pointee.regs) }
        @inline(__always) set { sync.pointee.regs = newValue.kvm; markDirty(.regs) }
    }

    public var rflags: UInt64 { sync.pointee.regs.rflags }

    public var specialRegisters: SpecialRegisters {
        get {
            _ = specialRegistersVersion
            return specialRegistersCache
        }
        set {
            newValue.store(into: &sync.pointee.sregs)
            markDirty(.sregs)
            // What was stored converts back to `newValue` (every field of
            // `SpecialRegisters` round-trips through `kvm_sregs`): kept as
            // the conversion, so the next read converts nothing. The version
            // moves only if the bytes did (the same registers stored again
            // keep every conversion made from them good).
            let size = MemoryLayout<kvm_sregs>.size
            if !sregsConverted || memcmp(sregsSnapshot, syncSRegs, size) != 0 {
                memcpy(sregsSnapshot, syncSRegs, size)
                specialRegistersCache = newValue
                sregsConverted = true
                sregsVersion &+= 1
            }
            sregsCompared = true
        }
    }

    /// Moves on when the sync copy's bytes differ from those last converted
    /// (compared once per run or write, whoever made it), and converts them.
    public var specialRegistersVersion: UInt64 {
        if !sregsCompared {
            let size = MemoryLayout<kvm_sregs>.size
            if !sregsConverted || memcmp(sregsSnapshot, syncSRegs, size) != 0 {
                memcpy(sregsSnapshot, syncSRegs, size)
                specialRegistersCache = SpecialRegisters(sregsSnapshot.pointee)
                sregsConverted = true
                sregsVersion &+= 1
            }
            sregsCompared = true
        }
        return sregsVersion
    }

    public var events: VCPUEvents {
        get { VCPUEvents(sync.pointee.events) }
        set { newValue.store(into: &sync.pointee.events); markDirty(.events) }
    }

    /// A KVM_RUN with `immediate_exit` set: KVM completes the pending exit
    /// and returns before the guest runs (Documentation/virt/kvm/api.rst).
    public func finishPendingExit() {
        run.pointee.immediate_exit = 1
        _ = try? runOnce()
        run.pointee.immediate_exit = 0
    }

    public func ioOutputElement(_ index: Int) -> UInt32? {
        let size = Int(ckvm_io_size(run))
        let data = ioData
        guard index >= 0, size > 0, (index + 1) * size <= data.count else { return nil }
        var v: UInt32 = 0
        for b in 0..<size { v |= UInt32(data[index * size + b]) << (8 * UInt32(b)) }
        return v
    }

    public func makeKicker() throws(KVMError) -> any Kicker { try makeKicker(signal: SIGUSR1) }


    /// Fills the synced state from KVM (GET ioctls), so that later partial
    /// updates start from KVM's values before the first exit has synced them.
    public func loadSyncedState() throws(KVMError) {
        sync.pointee.regs = try getRegs()
        sync.pointee.sregs = try getSRegs()
        sregsCompared = false
        sync.pointee.events = try getEvents()
    }

}

/// What a monitor needs from the VM that runs a nested guest: memory slots
/// over a `GuestMemory` and an MSR filter. `VirtualMachine` is the KVM one.
public protocol GuestVM: AnyObject {
    /// Maps `size` bytes of `memory` from `offset` at guest-physical `at` as slot `slot`.
    func map(_ memory: GuestMemory, offset: Int, size: Int?, slot: UInt32, at: UInt64, readOnly: Bool) throws(KVMError)
    /// Deletes slot `slot`, which starts at `at`.
    func unmap(slot: UInt32, at: UInt64) throws(KVMError)
    /// Which MSR accesses exit to the monitor (`ranges` allow; everything else
    /// follows `defaultAllow`).
    func setMSRFilter(defaultAllow: Bool, ranges: [VirtualMachine.MSRFilterRange]) throws(KVMError)
}

extension VirtualMachine: GuestVM {
    public func unmap(slot: UInt32, at guestPhysical: UInt64) throws(KVMError) {
        try setMemoryRegion(slot: slot, guestPhysical: guestPhysical, size: 0, host: nil)
    }
}
