import KVM
import NestedVMX
import VMXArch

/// What L0 made of a breakpoint hit at a guest exception handler.
enum TrapResult {
    /// A genuine exception: the guest's handler runs.
    case notOurs
    /// L0 emulated the instruction and unwound or replaced the delivery.
    case handled
    case stop(RunOutcome)
}

/// The stack frame an exception delivery pushed, read at the handler's RSP.
/// IA-32e mode (SDM Vol. 3A 6.14.2): [error code,] RIP, CS, RFLAGS, RSP,
/// SS, 8 bytes each. Protected mode (6.12.1): [error code,] EIP, CS,
/// EFLAGS, 4 bytes each, then ESP and SS only when the privilege level
/// changed; otherwise they are the handler's own.
struct ExceptionFrame {
    var errorCode: UInt64?
    var rip: UInt64, cs: UInt64, rflags: UInt64, rsp: UInt64, ss: UInt64

    /// Reads the frame at the handler's RSP; nil if it is not readable.
    init?(cpu: CPUState, hasErrorCode: Bool, memory: some GuestMemoryAccess) {
        let word = cpu.longModeActive ? 8 : 4
        let stack = cpu.longModeActive ? cpu.gprs[.rsp] : cpu.gprs[.rsp] & 0xffff_ffff
        func words(from index: Int, count: Int) -> [UInt64]? {
            guard case let .success(bytes) = PageWalker.readLinear(stack &+ UInt64(index * word), count: count * word,
                                                                    access: MemoryAccess(), state: cpu, memory: memory) else { return nil }
            return (0..<count).map { bytes.littleEndian(at: $0 * word, count: word) }
        }
        let o = hasErrorCode ? 1 : 0
        guard let inner = words(from: 0, count: o + 3) else { return nil }
        errorCode = hasErrorCode ? inner[0] : nil
        rip = inner[o]; cs = inner[o + 1]; rflags = inner[o + 2]
        if cpu.longModeActive || UInt8(cs & 3) != cpu.cpl {
            guard let outer = words(from: o + 3, count: 2) else { return nil }
            rsp = outer[0]; ss = outer[1]
        } else {
            rsp = stack &+ UInt64((o + 3) * word)
            ss = UInt64(cpu.ss.selector)
        }
    }

    /// The state at the faulting instruction, as it was before delivery (same
    /// privilege level only: CS and SS are unchanged).
    func unwound(_ cpu: CPUState) -> CPUState {
        var s = cpu
        s.rip = rip
        s.rflags = rflags
        s.gprs[.rsp] = rsp
        return s
    }
}

/// Segment descriptors in a guest's GDT (SDM Vol. 3A 3.4.5).
enum GDT {
    /// The 8-byte descriptor for `selector`, read through the guest's
    /// paging; nil for an LDT selector, one beyond the limit, or unreadable.
    static func descriptor(_ selector: UInt64, cpu: CPUState, memory: some GuestMemoryAccess) -> UInt64? {
        let offset = selector & 0xfff8
        guard selector & 4 == 0, offset + 7 <= UInt64(cpu.gdtr.limit),
              case let .success(bytes) = PageWalker.readLinear(cpu.gdtr.base &+ offset, count: 8, access: MemoryAccess(),
                                                               state: cpu, memory: memory) else { return nil }
        return bytes.littleEndian()
    }

    /// The 32-bit base address a descriptor holds.
    static func base(of descriptor: UInt64) -> UInt64 {
        ((descriptor >> 16) & 0xff_ffff) | ((descriptor >> 56) & 0xff) << 24
    }
}

extension Machine {
    /// Up to 15 bytes of the instruction at `linear`, stopping at an unmapped page.
    func fetchInstruction(at linear: UInt64, cpu: CPUState) -> [UInt8] {
        fetchInstruction(at: linear, cpu: cpu, memory: ram)
    }

    func fetchInstruction(at linear: UInt64, cpu: CPUState, memory: some GuestMemoryAccess) -> [UInt8] {
        var bytes: [UInt8] = []
        var address = linear
        while bytes.count < 15 {
            let chunk = min(15 - bytes.count, Int(0x1000 - (address & 0xfff)))
            guard case let .success(b) = PageWalker.readLinear(address, count: chunk, access: MemoryAccess(fetch: true),
                                                                state: cpu, memory: memory) else { break }
            bytes += b
            address &+= UInt64(chunk)
        }
        return bytes
    }

    /// #GP at L1's handler: if the fault was `mov cr4, reg` setting VMXE, L0
    /// records the virtual VMXE, loads the rest of the value, skips the
    /// instruction and unwinds the delivery, so L1 sees the write succeed
    /// (docs/ARCHITECTURE.md, "Virtual CR4.VMXE"). Returns false for any other #GP.
    func handleGeneralProtection(cpu: CPUState, note: inout ExitNote) -> Bool {
        guard let frame = ExceptionFrame(cpu: cpu, hasErrorCode: true, memory: ram) else { return false }
        if frame.cs & 3 != 0 { return redirectVMCALLToUD(frame: frame, cpu: cpu, note: &note) }
        let at = frame.unwound(cpu)
        guard let (register, length) = Self.decodeMovToCR4(fetchInstruction(at: frame.rip, cpu: at)) else { return false }
        let value = at.gprs[register]
        let vmxe: UInt64 = 1 << 13
        guard value & vmxe != 0, value & ~vmxe & ~cr4Supported == 0 else { return false }
        vmx.vmxe = true
        vcpu.specialRegisters.cr4 = value & ~vmxe
        var regs = vcpu.registers
        regs.rip = frame.rip &+ UInt64(length)
        regs.rflags = frame.rflags
        regs.rsp = frame.rsp
        vcpu.registers = regs
        note.kind = .debug
        note.address = 4          // CR4
        note.value = value
        return true
    }

    /// KVM answers VMCALL at CPL 3 with #GP. Outside VMX operation the SDM
    /// says #UD (31.3 VMCALL: the VMX-operation check comes before the CPL
    /// check), so L0 turns that #GP delivery into a #UD one: drop the error
    /// code and enter L1's #UD handler (same gate type assumed).
    func redirectVMCALLToUD(frame: ExceptionFrame, cpu: CPUState, note: inout ExitNote) -> Bool {
        guard !vmx.inVMXOperation, let handler = breakpoints.udHandler else { return false }
        let bytes = fetchInstruction(at: frame.rip, cpu: cpu)
        guard bytes.starts(with: [0x0f, 0x01, 0xc1]) else { return false }
        var regs = vcpu.registers
        regs.rsp &+= cpu.longModeActive ? 8 : 4          // the error code, dropped
        regs.rip = handler
        vcpu.registers = regs
        note.vmxReason = UInt32(VMXExitReason.vmcall.rawValue)
        note.value = VMXOutcomeCode.encode(.fault(.invalidOpcode))
        return true
    }


    /// `mov cr4, r64`: [REX] 0F 22 /r with reg = 4 (SDM Vol. 2B "MOV—Move
    /// to/from Control Registers"). Returns the source register and the length.
    static func decodeMovToCR4(_ bytes: [UInt8]) -> (register: Int, length: Int)? {
        var i = 0
        var rex: UInt8 = 0
        if i < bytes.count, (0x40...0x4f).contains(bytes[i]) { rex = bytes[i]; i += 1 }
        guard i + 2 < bytes.count, bytes[i] == 0x0f, bytes[i + 1] == 0x22 else { return nil }
        let modrm = bytes[i + 2]
        let cr = Int((modrm >> 3) & 7) | (rex & 4 != 0 ? 8 : 0)
        guard cr == 4 else { return nil }
        return (Int(modrm & 7) | (rex & 1 != 0 ? 8 : 0), i + 3)
    }

    /// #UD at L1's handler: if the instruction is a VMX instruction (the #UD
    /// of a standard KVM host, VMCALL here, and any VMX instruction at CPL 3,
    /// where KVM injects #UD itself rather than report an emulation failure),
    /// L0 emulates it and unwinds the delivery, or replaces it with the
    /// instruction's own fault. A genuine #UD is `.notOurs`.
    func handleInvalidOpcode(cpu: CPUState, note: inout ExitNote) -> TrapResult {
        guard let frame = ExceptionFrame(cpu: cpu, hasErrorCode: false, memory: ram) else { return .notOurs }
        let crossPrivilege = frame.cs & 3 != cpu.cs.selector & 3
        var at = frame.unwound(cpu)
        if crossPrivilege {
            // The instruction ran at the frame's privilege: CPL from CS.RPL, the
            // code segment's L/D bits from its GDT descriptor (SDM Vol. 3A 3.4.5).
            guard let code = GDT.descriptor(frame.cs, cpu: cpu, memory: ram) else { return .notOurs }
            at.cs.selector = UInt16(truncatingIfNeeded: frame.cs)
            at.cs.dpl = UInt8(frame.cs & 3)
            at.cs.l = code & (1 << 53) != 0
            at.cs.db = code & (1 << 54) != 0
            at.ss.selector = UInt16(truncatingIfNeeded: frame.ss)
            at.ss.dpl = UInt8(frame.ss & 3)
        }
        guard case let .success(insn) = VMXDecoder.decode(fetchInstruction(at: frame.rip, cpu: at), state: at) else {
            return .notOurs
        }
        let execution = VMXSemantics.execute(insn, cpu: &at, vmx: &vmx, memory: ram)
        describe(execution, in: &note)
        if let invalidation = execution.invalidation { invalidate(invalidation) }
        note.kind = .debug
        switch execution.result {
        case .succeed, .failInvalid, .failValid:
            at.storeRegisters(into: vcpu)
            return .handled
        case .fault(.invalidOpcode):
            return .notOurs                    // the #UD stands: let the handler run
        case let .fault(exception) where crossPrivilege:
            // The delivery already switched to the handler's stack; a #GP would
            // have built the same frame plus an error code. So push the error
            // code and enter L1's #GP handler instead (same gate type assumed).
            guard exception.vector == 13, let handler = breakpoints.gpHandler else { return .notOurs }
            var regs = vcpu.registers
            regs.rsp &-= 8
            guard case .success = PageWalker.writeLinear(regs.rsp, bytes: Array(repeating: 0, count: 8),
                                                         access: MemoryAccess(write: true), state: cpu, memory: ram) else {
                return .notOurs
            }
            regs.rip = handler
            vcpu.registers = regs
            return .handled
        case let .fault(exception):
            // Deliver `exception` instead of the #UD: unwind, then inject.
            frame.unwound(cpu).storeRegisters(into: vcpu)
            inject(exception)
            return .handled
        case let .vmEntry(launch):
            // The #UD frame is dropped: VM exits load RSP from the host state.
            return enterL2(launch: launch, note: &note).map { .stop($0) } ?? .handled
        case let .entryFailed(failure):
            return failEntry(failure, l1: at, note: &note).map { .stop($0) } ?? .handled
        }
    }
}
