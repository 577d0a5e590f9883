import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// INT n, INT3, INT1 and INTO in protected mode, which KVM's emulator does
/// not carry out on our hosts (README, "What does not work yet"): L0
/// delivers them through the guest's IDT (`InterruptDelivery`), at L1 and,
/// after L1's exception bitmap has had its say, at L2.
enum SoftwareInterrupt: Equatable {
    /// Deliver `vector` through the IDT; the instruction is `length` bytes.
    case deliver(vector: UInt8, kind: DeliveredEvent.Kind, length: Int)
    /// INTO with RFLAGS.OF clear: the instruction does nothing.
    case nothing

    /// The software interrupt `bytes` start with, in protected mode.
    init?(_ bytes: [UInt8], cpu: CPUState) {
        guard cpu.protectedMode, !cpu.virtual8086 else { return nil }
        if let int = X86Decoders.softwareInterrupt(bytes, mode64: cpu.mode64, overflow: cpu.rflags & 1 << 11 != 0) {
            self = .deliver(vector: int.vector, kind: int.kind, length: int.length)
        } else if bytes.first == 0xce && !cpu.mode64 {
            self = .nothing
        } else {
            return nil
        }
    }
}

extension Machine {
    /// Carries out `int` at `cpu` on `target`, whose memory is `memory`: the
    /// handler's state, or the fault of the delivery itself, injected as the
    /// processor would raise it. A table or stack outside RAM is returned.
    func carryOut(_ int: SoftwareInterrupt, at cpu: CPUState, on target: any VirtualCPU,
                  memory: some GuestMemoryAccess, note: inout ExitNote) -> InterruptDelivery.Failure? {
        guard case let .deliver(vector, kind, length) = int else {
            var regs = target.registers
            regs.rip = cpu.wrappingRIP(cpu.rip &+ 1)
            target.registers = regs
            return nil
        }
        note.value = UInt64(vector)
        switch InterruptDelivery.deliver(vector: vector, softwareInterrupt: kind != .privilegedSoftwareException,
                                         returnRIP: cpu.wrappingRIP(cpu.rip &+ UInt64(length)), cpu: cpu, memory: memory) {
        case let .success(handler):
            handler.storeRegistersAndSegments(into: target)
            return nil
        case let .failure(.exception(e)):
            inject(e, into: target)
            note.flags.insert(.faulted)
            return nil
        case let .failure(failure):
            return failure
        }
    }

    /// L1's software interrupt.
    func l1SoftwareInterrupt(_ int: SoftwareInterrupt, cpu: CPUState, note: inout ExitNote) -> RunOutcome? {
        guard case let .notRAM(physical)? = carryOut(int, at: cpu, on: vcpu, memory: ram, note: &note) else { return nil }
        return .unhandledExit("a software interrupt's delivery meets \(hex(physical)), which is not RAM")
    }

    /// L2's software interrupt. INT3, INTO and INT1 are exceptions, so L1's
    /// exception bitmap may take them as an exit, with the instruction's
    /// length (SDM 26.2, 28.2.1); INT n never exits. An EPT violation or
    /// misconfiguration on the way is an exit during delivery, with the
    /// event as IDT-vectoring information and the instruction's length
    /// (28.2.4).
    func l2SoftwareInterrupt(_ int: SoftwareInterrupt, state: CPUState, note: inout ExitNote) -> RunOutcome? {
        guard let vmcs = vmx.current, let l2 = l2Machine else { return .unhandledExit("L2 software interrupt without a VMCS") }
        guard case let .deliver(vector, kind, length) = int else {
            _ = carryOut(int, at: state, on: l2.vcpu, memory: L2PhysicalMemory(machine: self, writable: true), note: &note)
            return nil
        }
        let event = DeliveredEvent(kind: kind, vector: vector)
        if kind != .softwareInterrupt, ExitRouting.wantsException(Int(vector), errorCode: nil, vmcs: vmcs) {
            return reflect(NestedExit(reason: .exceptionOrNMI, instructionLength: length, interruptionInfo: event.interruptionInformation),
                           state: state, note: &note)
        }
        func duringDelivery(_ exit: NestedExit) -> RunOutcome? {
            reflect(exit.duringDelivery(of: event, instructionLength: length), state: state, note: &note)
        }
        do {
            if let fault = try mapEntryPages(of: state, injecting: event, l2: l2, vmcs: vmcs) { return duringDelivery(fault) }
        } catch {
            return .unhandledExit("EPT02 slot: \(error)")
        }
        guard case let .notRAM(physical)? = carryOut(int, at: state, on: l2.vcpu, memory: L2PhysicalMemory(machine: self, writable: true),
                                                    note: &note) else { return nil }
        // A TSS or stack page that EPT12 does not map (or maps read-only).
        if let exit = eptExit(at: physical) { return duringDelivery(exit) }
        return .unhandledExit("L2's software interrupt meets \(hex(physical)), which is not RAM")
    }

    /// The EPT violation or misconfiguration a delivery's write to L2-physical
    /// `physical` meets; nil when EPT12 allows it (the page is then not L1 RAM).
    func eptExit(at physical: UInt64) -> NestedExit? {
        guard let vmcs = vmx.current, case let .ept(eptp) = L2PhysicalMap(vmcs) else { return nil }
        guard case let .failure(failure) = EPTWalker.translate(physical, access: EPTWalker.Access(write: true), eptp: eptp,
                                                               physicalAddressBits: vmx.capabilities.physicalAddressBits,
                                                               memory: ram) else { return nil }
        return NestedExit(failure, guestPhysical: physical)
    }
}
