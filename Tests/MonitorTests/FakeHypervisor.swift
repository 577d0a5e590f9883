import Foundation
import KVM
@testable import Monitor

/// Time as a test sets it: wall time and the vCPU thread's CPU time move
/// only when the test (or a fake vCPU's run) moves them.
final class ManualClock: MonitorClock, @unchecked Sendable {
    var wall: UInt64 = 1_000_000_000
    var cpu: UInt64 = 0
    func now() -> UInt64 { wall }
    func threadCPUTime() -> UInt64 { cpu }
    /// A guest ran for `nanos`: both clocks move.
    func run(_ nanos: UInt64) { wall += nanos; cpu += nanos }
    /// Waiting moves wall time only.
    func sleep(until deadline: UInt64) { wall = max(wall, deadline) }
}

struct NoKicker: Kicker { func kick() {} }

/// One scripted run of a fake vCPU: the guest runs for `ran` nanoseconds,
/// `effect` changes its state as the guest would have, and `exit` comes back.
struct FakeRun {
    var ran: UInt64 = 1_000
    var effect: ((FakeVCPU) -> Void)?
    var exit: VCPUExit
}

/// A vCPU that returns scripted exits and records what the monitor did to it.
final class FakeVCPU: VirtualCPU {
    let id: UInt32 = 0
    let clock: ManualClock
    var registers = Registers()
    var specialRegisters = SpecialRegisters() { didSet { specialRegistersVersion &+= 1 } }
    private(set) var specialRegistersVersion: UInt64 = 0
    var events = VCPUEvents()
    var script: [FakeRun] = []
    private(set) var runs = 0
    private(set) var finishedPending = 0
    private(set) var ioInputs: [UInt32] = []
    private(set) var mmioReads: [UInt64] = []
    private(set) var msrReplies: [(data: UInt64, fault: Bool)] = []
    private(set) var guestDebug: [(control: GuestDebugControl, registers: [UInt64])] = []
    var msrs: [UInt32: UInt64] = [:]
    private(set) var injectedInterrupts: [UInt8] = []
    var requestInterruptWindow = false
    var readyForInterruptInjection = true

    init(clock: ManualClock) { self.clock = clock }

    func runOnce() throws(KVMError) -> VCPUExit {
        guard !script.isEmpty else { throw KVMError("fake vCPU \(ObjectIdentifier(self)): run with no scripted exit", errno: EIO) }
        let next = script.removeFirst()
        runs += 1
        clock.run(next.ran)
        next.effect?(self)
        return next.exit
    }

    /// What completing the last exit does to the guest (KVM retires an IN there).
    var onFinishPending: ((FakeVCPU) -> Void)?
    func finishPendingExit() {
        finishedPending += 1
        onFinishPending?(self)
        onFinishPending = nil
    }
    func ioOutputElement(_ index: Int) -> UInt32? { nil }
    func completeIOIn(_ value: UInt32, element index: Int) { ioInputs.append(value) }
    func completeMMIORead(_ value: UInt64) { mmioReads.append(value) }
    func completeMSR(data: UInt64, fault: Bool) { msrReplies.append((data, fault)) }

    func setGuestDebug(_ control: GuestDebugControl, debugRegisters: [UInt64]) throws(KVMError) {
        guestDebug.append((control, debugRegisters))
    }

    func getMSRs(_ indices: [UInt32]) -> [UInt64?] { indices.map { msrs[$0] ?? 0 } }
    /// Every MSR KVM_SET_MSRS wrote, in order.
    private(set) var msrWrites: [UInt32] = []
    func setMSRs(_ pairs: [(index: UInt32, value: UInt64)]) -> Int {
        for p in pairs { msrs[p.index] = p.value }
        msrWrites += pairs.map(\.index)
        return pairs.count
    }

    func tscKHz() throws(KVMError) -> UInt64 { 1_000_000 }          // 1 GHz: a TSC cycle is 1 ns
    var debug = DebugRegisters.reset
    var dr7: UInt64 { get { debug.dr7 } set { debug.dr7 = newValue } }
    /// How often L0 read the debug registers (an ioctl on KVM).
    private(set) var debugRegisterReads = 0
    func debugRegisters() throws(KVMError) -> DebugRegisters {
        debugRegisterReads += 1
        return debug
    }
    func setDebugRegisters(_ value: DebugRegisters) throws(KVMError) { debug = value }
    func injectInterrupt(_ vector: UInt8) throws(KVMError) { injectedInterrupts.append(vector) }
    func makeKicker() throws(KVMError) -> any Kicker { NoKicker() }

    /// The general-purpose registers and RIP as the guest left them.
    func set(rip: UInt64) { registers.rip = rip }
}

/// A VM that records its memory slots and MSR filters.
final class FakeVM: GuestVM {
    struct Slot: Equatable { var slot: UInt32, at: UInt64, offset: Int, size: Int, readOnly: Bool }
    private(set) var slots: [Slot] = []
    /// The host memory behind each slot, to read what the guest would see.
    private(set) var backing: [UInt32: GuestMemory] = [:]
    private(set) var filters = 0

    /// KVM's rules: the host range must lie in `memory` (EINVAL) and the
    /// guest range may not overlap another slot (EEXIST).
    func map(_ memory: GuestMemory, offset: Int, size: Int?, slot: UInt32, at: UInt64, readOnly: Bool) throws(KVMError) {
        let length = size ?? memory.size - offset
        guard offset >= 0, length > 0, offset + length <= memory.size else { throw KVMError("fake map", errno: EINVAL) }
        guard !slots.contains(where: { at < $0.at + UInt64($0.size) && $0.at < at + UInt64(length) }) else {
            throw KVMError("fake map", errno: EEXIST)
        }
        slots.append(Slot(slot: slot, at: at, offset: offset, size: length, readOnly: readOnly))
        backing[slot] = memory
    }

    /// The bytes the guest reads at guest-physical `address`, through its slot.
    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        guard let s = slots.first(where: { $0.at <= address && address + UInt64(count) <= $0.at + UInt64($0.size) }) else { return nil }
        return backing[s.slot]?.read(at: UInt64(s.offset) + (address - s.at), count: count)
    }

    func unmap(slot: UInt32, at: UInt64) throws(KVMError) {
        slots.removeAll { $0.slot == slot }
        backing[slot] = nil
    }
    func setMSRFilter(defaultAllow: Bool, ranges: [VirtualMachine.MSRFilterRange]) throws(KVMError) { filters += 1 }
}

/// Hands the monitor fake vCPUs and a fake L2 VM, all on one manual clock.
final class FakeHypervisor: Hypervisor {
    let clock = ManualClock()
    lazy var l1 = FakeVCPU(clock: clock)
    lazy var l2 = FakeVCPU(clock: clock)
    let l2VM = FakeVM()
    private(set) var l2VMsMade = 0

    /// A small host: MAXPHYADDR 40, 48-bit linear addresses, VMX-free CPUID.1.
    func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        [CPUIDEntry(function: 0, eax: 0xd, ebx: 0, ecx: 0, edx: 0),
         CPUIDEntry(function: 1, eax: 0x806f8, ebx: 0x0100_0800, ecx: 0x8020_0000, edx: 0x0789_fbff),
         CPUIDEntry(function: 7, eax: 0, ebx: 0, ecx: 0, edx: 0),
         CPUIDEntry(function: 0x8000_0008, eax: 0x3028, ebx: 0, ecx: 0, edx: 0)]
    }

    func makeL1(memory: GuestMemory, cpuid: [CPUIDEntry], deniedMSRs: [ClosedRange<UInt32>],
                writeTrackedMSRs: [ClosedRange<UInt32>]) throws(KVMError) -> any VirtualCPU { l1 }

    /// The architectural base, UMIP, FSGSBASE, OSXSAVE, SMEP and SMAP.
    func acceptedCR4(cpuid: [CPUIDEntry]) throws(KVMError) -> UInt64 { 0x35_0fff }

    func makeL2(cpuid: [CPUIDEntry]) throws(KVMError) -> (vm: any GuestVM, vcpu: any VirtualCPU) {
        l2VMsMade += 1
        return (l2VM, l2)
    }
}
