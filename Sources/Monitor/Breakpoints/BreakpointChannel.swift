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
    /// The guest is single-stepped, breakpoints armed, until it can take a
    /// pending interrupt (`stepForInterruptWindow`).
    private(set) var windowStepping = false
    /// The guest is single-stepped, breakpoints armed, for the monitor trap
    /// flag (`stepForMonitorTrap`).
    private(set) var monitorTrapping = false

    init(vcpu: any VirtualCPU, vectors: [Int]) {
        self.vcpu = vcpu
        breakpoints = IDTBreakpoints(vectors: vectors)
    }

    /// Watches `vectors` from now on; the next refresh walks the IDT again.
    func watch(_ vectors: [Int]) { breakpoints.watch(vectors) }

    /// Before an entry: re-reads the watched gates through the guest's
    /// paging and re-arms when a handler moved. Nothing while stepping.
    func refresh(cpu: CPUState, memory: some GuestMemoryAccess) throws(KVMError) {
        try refresh(key: IDTBreakpoints.Key(cpu), cpu: { cpu }, memory: memory)
    }

    /// The same from the gates' key, building the whole state only when needed.
    func refresh(key: IDTBreakpoints.Key, cpu: () -> CPUState, memory: some GuestMemoryAccess) throws(KVMError) {
        guard !stepping, breakpoints.refresh(key: key, cpu: cpu, memory: memory) else { return }
        try arm()
    }

    /// Loads the debug registers; DR7 = 0 and no window stepping turn guest
    /// debug off, which costs nothing.
    func arm() throws(KVMError) {
        let regs = breakpoints.debugRegisters
        var control: GuestDebugControl = []
        if regs[7] != 0 { control.formUnion([.enable, .useHardwareBreakpoints]) }
        if windowStepping || monitorTrapping { control.formUnion([.enable, .singleStep]) }
        try vcpu.setGuestDebug(control, debugRegisters: regs)
    }

    /// Single-steps the guest while an interrupt waits for it to open its
    /// interrupt window: KVM reports the window only at an exit of its own,
    /// so without this an `STI; NOP; CLI` never takes the interrupt that the
    /// SDM delivers after the NOP (Vol. 3A 6.8.3). Each step is a debug exit
    /// at which L0 looks again.
    func stepForInterruptWindow(_ on: Bool) throws(KVMError) {
        guard on != windowStepping else { return }
        windowStepping = on
        if !stepping { try arm() }
    }

    /// Single-steps L2 after every instruction while L1's "monitor trap
    /// flag" is 1 (SDM 26.5.2): each step's debug exit is an MTF VM exit.
    func stepForMonitorTrap(_ on: Bool) throws(KVMError) {
        guard on != monitorTrapping else { return }
        monitorTrapping = on
        if !stepping { try arm() }
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
