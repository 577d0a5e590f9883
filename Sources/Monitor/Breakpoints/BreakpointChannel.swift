import KVM
import NestedVMX

/// Trap channel (b) on one vCPU, the same for L1's and L2's: execute
/// breakpoints on the guest's own IDT handlers (`IDTBreakpoints`), armed
/// through guest debug, and the single step that lets a handler run past
/// one. RFLAGS.RF does not suppress a breakpoint on this backend, so L0
/// lifts the breakpoints, steps the handler's first instruction and re-arms
/// them at the debug exit the step gives (docs/ARCHITECTURE.md, "Trap channels").
final class BreakpointChannel {
    private let vcpu: any VirtualCPU
    private(set) var breakpoints: IDTBreakpoints
    /// A handler's first instruction is being single-stepped, breakpoints lifted.
    private(set) var stepping = false

    init(vcpu: any VirtualCPU, vectors: [Int]) {
        self.vcpu = vcpu
        breakpoints = IDTBreakpoints(vectors: vectors)
    }

    /// Watches `vectors` from now on; the next refresh walks the IDT again.
    func watch(_ vectors: [Int]) { breakpoints.watch(vectors) }

    /// Before an entry: re-reads the watched gates through the guest's
    /// paging and re-arms when a handler moved. Nothing while stepping.
    func refresh(cpu: CPUState, memory: some GuestMemoryAccess) throws(KVMError) {
        guard !stepping, breakpoints.refresh(cpu: cpu, memory: memory) else { return }
        try arm()
    }

    /// Loads the debug registers; DR7 = 0 turns guest debug off, which costs nothing.
    func arm() throws(KVMError) {
        let regs = breakpoints.debugRegisters
        try vcpu.setGuestDebug(regs[7] == 0 ? [] : [.enable, .useHardwareBreakpoints], debugRegisters: regs)
    }

    /// Lets the guest's handler run: its first instruction is single-stepped
    /// with the breakpoints lifted.
    func stepPastHandler() throws(KVMError) {
        try vcpu.setGuestDebug([.enable, .singleStep])
        stepping = true
    }

    /// At a debug exit: true when it ends the step, and the breakpoints are back.
    func finishStep() throws(KVMError) -> Bool {
        guard stepping else { return false }
        stepping = false
        try arm()
        return true
    }

    /// The guest goes on somewhere other than a watched handler (L1 entered
    /// L2 elsewhere): a step in progress is moot, and the breakpoints go back.
    func cancelStep(unlessAt address: UInt64) throws(KVMError) {
        guard stepping, breakpoints.vector(atHandler: address) == nil else { return }
        stepping = false
        try arm()
    }
}
