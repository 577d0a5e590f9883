import KVM

/// Where the monitor gets its VMs and vCPUs: `KVMHypervisor` on /dev/kvm,
/// or a test's fakes (docs/ARCHITECTURE.md, "The vCPU seam").
public protocol Hypervisor: AnyObject {
    /// The CPUID the host can give a guest.
    func supportedCPUID() throws(KVMError) -> [CPUIDEntry]
    /// L1's VM: `memory` at guest-physical 0, VMCALL raising #UD, accesses
    /// to `deniedMSRs`, writes to `writeTrackedMSRs` and accesses to MSRs
    /// KVM does not know exiting to the monitor. Returns its vCPU, state
    /// loaded, with `cpuid`.
    func makeL1(memory: GuestMemory, cpuid: [CPUIDEntry], deniedMSRs: [ClosedRange<UInt32>],
                writeTrackedMSRs: [ClosedRange<UInt32>]) throws(KVMError) -> any VirtualCPU
    /// The VM that runs L2, with no memory yet, and its vCPU.
    func makeL2(cpuid: [CPUIDEntry]) throws(KVMError) -> (vm: any GuestVM, vcpu: any VirtualCPU)
    /// The CR4 bits a vCPU with `cpuid` accepts, VMXE aside (README, "CPUID
    /// and CR4"): IA32_VMX_CR4_FIXED1 is built from them.
    func acceptedCR4(cpuid: [CPUIDEntry]) throws(KVMError) -> UInt64
}

/// KVM: both VMs live in one process and share L1's memory.
public final class KVMHypervisor: Hypervisor {
    let system: KVMSystem

    public init() throws(KVMError) { system = try KVMSystem() }

    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] { try system.supportedCPUID() }

    public func makeL1(memory: GuestMemory, cpuid: [CPUIDEntry], deniedMSRs: [ClosedRange<UInt32>],
                       writeTrackedMSRs: [ClosedRange<UInt32>]) throws(KVMError) -> any VirtualCPU {
        let vm = try makeVM()
        try vm.map(memory, slot: 0, at: 0)
        try vm.setMSRFilter(defaultAllow: true,
                            ranges: deniedMSRs.map { .denying($0, reads: true, writes: true) }
                                + writeTrackedMSRs.map { .denying($0, reads: false, writes: true) })
        return try makeVCPU(vm, cpuid: cpuid)
    }

    public func makeL2(cpuid: [CPUIDEntry]) throws(KVMError) -> (vm: any GuestVM, vcpu: any VirtualCPU) {
        let vm = try makeVM()
        return (vm, try makeVCPU(vm, cpuid: cpuid))
    }

    /// Measured, not derived from `cpuid`: on our hosts KVM_GET_SUPPORTED_CPUID
    /// leaves out features the vCPU accepts and its guest sees (XSAVE,
    /// FSGSBASE, SMEP, SMAP: measured 2026-12-06). Each bit is tried with
    /// KVM_SET_SREGS on a scratch vCPU, in protected mode and in IA-32e
    /// mode (PCIDE needs the latter).
    public func acceptedCR4(cpuid: [CPUIDEntry]) throws(KVMError) -> UInt64 {
        let vcpu = try system.createVM().createVCPU()
        try vcpu.setCPUID(cpuid)
        let base = try vcpu.getSRegs()
        var accepted: UInt64 = 0
        for bit in 0..<32 where bit != 13 {
            for longMode in [false, true] {
                var s = base
                s.cr0 = longMode ? 0x8000_0011 : 0x11
                s.efer = longMode ? 0x500 : 0
                s.cs.l = longMode ? 1 : 0
                s.cr4 = (longMode ? 0x20 : 0) | 1 << UInt64(bit)
                if (try? vcpu.setSRegs(s)) != nil { accepted |= 1 << UInt64(bit); break }
            }
        }
        return accepted
    }

    /// A VM whose VMCALL raises #UD (caught on the guest's #UD handler)
    /// instead of being rewritten by KVM as a hypercall
    /// (KVM_X86_QUIRK_FIX_HYPERCALL_INSN), and whose MSR accesses the
    /// filter denies or KVM does not know exit to the monitor.
    private func makeVM() throws(KVMError) -> VirtualMachine {
        let vm = try system.createVM()
        try? vm.setTSSAddress()   // needed on Intel hosts only
        try vm.disableQuirks(1 << 5)
        try vm.enableUserSpaceMSR([.filter, .unknown])
        return vm
    }

    /// The vCPU, its state synced on every exit so that no exit needs a GET
    /// ioctl (VMX emulation reads CR0/CR4/EFER, segments and
    /// interruptibility), and the synced copy filled once from KVM.
    private func makeVCPU(_ vm: VirtualMachine, cpuid: [CPUIDEntry]) throws(KVMError) -> VCPU {
        let vcpu = try vm.createVCPU()
        try vcpu.setCPUID(cpuid)
        try vcpu.enableSyncRegs([.regs, .sregs, .events])
        try vcpu.loadSyncedState()
        return vcpu
    }
}
