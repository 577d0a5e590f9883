import KVM
import NestedVMX
import TraceFormat
import VMXArch

extension Machine {
    /// Handles one exit: the single flat switch over exit reasons. Returns an
    /// outcome when the run is over; fills `note` for the trace.
    public func handle(_ exit: VCPUExit, note: inout ExitNote) -> RunOutcome? {
        if case let .l2(l2) = running { return handleL2(exit, l2: l2, note: &note) }
        switch exit {
        case let .io(io): return handleIO(io, on: vcpu, note: &note)
        case let .mmio(access): return handleMMIO(access, on: vcpu, note: &note)
        case .hlt:
            note.kind = .hlt
            return handleHalt()
        case let .rdmsr(m):
            note.kind = .rdmsr; note.address = UInt64(m.index)
            let value = readMSR(m.index)
            vcpu.completeMSR(data: value ?? 0, fault: value == nil)
            note.value = value ?? 0
            if value == nil { note.flags.insert(.faulted) }
            return nil
        case let .wrmsr(m):
            note.kind = .wrmsr; note.address = UInt64(m.index); note.value = m.data
            let ok = Self.hostStateMSRs.contains { $0.contains(m.index) } ? writeTrackedL1MSR(m.index, m.data)
                : writeMSR(m.index, m.data)
            vcpu.completeMSR(fault: !ok)
            if !ok { note.flags.insert(.faulted) }
            return nil
        case .shutdown:
            note.kind = .shutdown
            return .tripleFault
        case .interrupted:
            note.kind = .interrupted
            return nil
        case .irqWindowOpen:
            note.kind = .irqWindow
            return nil
        case let .debug(d):
            return handleDebugExit(d, note: &note)
        case let .internalError(e):
            note.kind = .internalError; note.value = UInt64(e.suberror)
            if e.suberror == InternalErrorExit.emulation, let bytes = e.instruction {
                return handleEmulationFailure(bytes, note: &note)
            }
            var what = "KVM internal error, suberror \(e.suberror)"
            if let insn = e.instruction {
                what += ", instruction bytes " + insn.array.map { hex($0, digits: 2) }.joined(separator: " ")
            }
            return .unhandledExit(what)
        case let .failEntry(reason, _):
            note.kind = .failEntry; note.value = reason
            return .unhandledExit("VM entry failed, hardware reason \(hex(reason))")
        case let .systemEvent(type):
            note.kind = .systemEvent; note.value = UInt64(type)
            return .unhandledExit("system event \(type)")
        case let .exception(vector, _):
            note.kind = .unknownExit; note.value = UInt64(vector)
            return .unhandledExit("exception exit, vector \(vector)")
        case let .unknown(reason):
            note.kind = .unknownExit; note.value = UInt64(reason)
            return .unhandledExit("KVM exit reason \(reason)")
        }
    }

    /// Port I/O: the claimed device, or all ones / dropped for a free port.
    /// `target` is the vCPU that made the access: L1's, or L2's for a port L1
    /// does not intercept (L1's devices answer it).
    @inline(__always)
    func handleIO(_ io: IOExit, on target: any VirtualCPU, note: inout ExitNote) -> RunOutcome? {
        note.kind = io.direction == .input ? .ioIn : .ioOut
        note.address = UInt64(io.port); note.size = io.size
        if io.count > 1 { note.flags.insert(.string) }
        let device = ports.device(at: io.port)
        if device == nil { note.flags.insert(.unclaimed) }
        if io.direction == .input {
            let ones: UInt32 = io.size >= 4 ? .max : (1 << (8 * UInt32(io.size))) - 1
            for i in 0..<Int(io.count) {
                let v = device?.read(port: io.port, size: io.size) ?? ones
                target.completeIOIn(v, element: i)
                if i == 0 { note.value = UInt64(v) }
            }
            return nil
        }
        note.value = UInt64(io.value)
        guard let device else { return nil }
        if io.count == 1 {
            if case let .stop(outcome) = device.write(port: io.port, size: io.size, value: io.value) { return outcome }
            return nil
        }
        for i in 0..<Int(io.count) {
            guard let v = target.ioOutputElement(i) else { break }
            if case let .stop(outcome) = device.write(port: io.port, size: io.size, value: v) { return outcome }
        }
        return nil
    }

    /// MMIO: a registered device, or an unbacked address that reads all ones.
    @inline(__always)
    func handleMMIO(_ access: MMIOExit, on target: any VirtualCPU, note: inout ExitNote) -> RunOutcome? {
        note.kind = access.isWrite ? .mmioWrite : .mmioRead
        note.address = access.address; note.size = access.length
        guard let (device, offset) = mmio.device(at: access.address) else {
            note.flags.insert(.unclaimed)
            if access.isWrite { note.value = access.data } else {
                target.completeMMIORead(.max)
                note.value = access.length >= 8 ? .max : (1 << (8 * UInt64(access.length))) - 1
            }
            return nil
        }
        if access.isWrite {
            note.value = access.data
            if case let .stop(outcome) = device.write(offset: offset, size: access.length, value: access.data) { return outcome }
        } else {
            let v = device.read(offset: offset, size: access.length)
            target.completeMMIORead(v)
            note.value = v
        }
        return nil
    }

    /// HLT (KVM_EXIT_HLT, RIP already past the HLT). The guest sleeps until an
    /// interrupt; the only source is the APIC, so if none is deliverable and
    /// the timer is armed, idle time is skipped by firing it now. If nothing
    /// can ever wake the guest, the run ends.
    func handleHalt() -> RunOutcome? {
        let interruptsEnabled = vcpu.rflags & (1 << 9) != 0
        guard interruptsEnabled else { return .deadHalt(reason: "HLT with interrupts disabled (RFLAGS.IF = 0)") }
        if apic.deliverableVector != nil { return nil }
        if apic.timerDeadline != nil {
            apic.fireTimer(at: clock.now())
            if apic.deliverableVector != nil { return nil }
        }
        return .deadHalt(reason: "HLT with no interrupt pending and no timer armed")
    }

    /// L1's WRMSR of a host-state MSR (`hostStateMSRs`): L0 makes the write
    /// KVM would have made and remembers it; false raises #GP.
    func writeTrackedL1MSR(_ index: UInt32, _ value: UInt64) -> Bool {
        let done = vcpu.setMSRs([(index, value)]) == 1
        l1MSRs[index] = done ? value : nil
        return done
    }

    /// RDMSR of an MSR L0 emulates; nil raises #GP.
    func readMSR(_ index: UInt32) -> UInt64? {
        switch index {
        case MSRIndex.apicBase: return apic.baseMSR
        case HyperV.msrRange: return vmx.hyperV.readMSR(index)
        default:
            let value = vmx.readMSR(index)
            if value != nil { vmxBreakpointsWanted = true }
            return value
        }
    }

    /// WRMSR of an MSR L0 emulates; false raises #GP. The VMX capability MSRs
    /// are read-only (SDM Appendix A); feature control has lock semantics.
    func writeMSR(_ index: UInt32, _ value: UInt64) -> Bool {
        switch index {
        case MSRIndex.apicBase: return apic.writeBaseMSR(value)
        case HyperV.msrRange:
            return vmx.hyperV.writeMSR(index, value, physicalAddressBits: vmx.capabilities.physicalAddressBits, memory: ram)
        case VMXMSR.featureControl:
            vmxBreakpointsWanted = true
            return vmx.writeFeatureControl(value)
        default: return false
        }
    }
}
