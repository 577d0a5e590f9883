import KVM
import NestedVMX

/// The IA-32e interrupt stack frame an exception pushed (SDM Vol. 3A 6.14.2):
/// [error code,] RIP, CS, RFLAGS, RSP, SS.
/// What L0 made of a breakpoint hit at a guest exception handler.
enum TrapResult {
    /// A genuine exception: the guest's handler runs.
    case notOurs
    /// L0 emulated the instruction and unwound or replaced the delivery.
    case handled
    case stop(RunOutcome)
}

struct ExceptionFrame {
    var errorCode: UInt64?
    var rip: UInt64, cs: UInt64, rflags: UInt64, rsp: UInt64, ss: UInt64

    /// Reads the frame at the handler's RSP; nil if it is not readable.
    init?(cpu: CPUState, hasErrorCode: Bool, memory: GuestRAM) {
        let count = hasErrorCode ? 6 : 5
        guard case let .success(bytes) = PageWalker.readLinear(cpu.gprs[.rsp], count: count * 8, access: MemoryAccess(),
                                                                 state: cpu, memory: memory) else { return nil }
        func q(_ i: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[i * 8 + $1]) << (8 * UInt64($1)) } }
        let o = hasErrorCode ? 1 : 0
        errorCode = hasErrorCode ? q(0) : nil
        rip = q(o); cs = q(o + 1); rflags = q(o + 2); rsp = q(o + 3); ss = q(o + 4)
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

extension Machine {
    /// Up to 15 bytes of the instruction at `linear`, stopping at an unmapped page.
    func fetchInstruction(at linear: UInt64, cpu: CPUState) -> [UInt8] {
        var bytes: [UInt8] = []
        var address = linear
        while bytes.count < 15 {
            let chunk = min(15 - bytes.count, Int(0x1000 - (address & 0xfff)))
            guard case let .success(b) = PageWalker.readLinear(address, count: chunk, access: MemoryAccess(fetch: true),
                                                                state: cpu, memory: ram) else { break }
            bytes += b
            address &+= UInt64(chunk)
        }
        return bytes
    }

    /// #GP at L1's handler: if the fault was `mov cr4, reg` setting VMXE, L0
    /// records the virtual VMXE, loads the rest of the value, skips the
    /// instruction and unwinds the delivery, so L1 sees the write succeed
    /// (DESIGN.md point 2). Returns false for any other #GP.
    func handleGeneralProtection(cpu: CPUState, note: inout ExitNote) -> Bool {
        guard let frame = ExceptionFrame(cpu: cpu, hasErrorCode: true, memory: ram), frame.cs & 3 == 0 else { return false }
        let at = frame.unwound(cpu)
        guard let (register, length) = Self.decodeMovToCR4(fetchInstruction(at: frame.rip, cpu: at)) else { return false }
        let value = at.gprs[register]
        let vmxe: UInt64 = 1 << 13
        guard value & vmxe != 0, value & ~vmxe & ~cr4Supported == 0 else { return false }
        vmx.vmxe = true
        vcpu.sync.pointee.sregs.cr4 = value & ~vmxe
        vcpu.markDirty(.sregs)
        var regs = vcpu.sync.pointee.regs
        regs.rip = frame.rip &+ UInt64(length)
        regs.rflags = frame.rflags
        regs.rsp = frame.rsp
        vcpu.sync.pointee.regs = regs
        vcpu.markDirty(.regs)
        note.kind = .debug
        note.address = 4          // CR4
        note.value = value
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
    /// of a standard KVM host, VMCALL here), L0 emulates it and unwinds the
    /// delivery, or replaces it with the instruction's own fault. A genuine
    /// #UD is `.notOurs`. Only same-privilege deliveries are understood: a VMX
    /// instruction at CPL 3 keeps its #UD on this channel (documented).
    func handleInvalidOpcode(cpu: CPUState, note: inout ExitNote) -> TrapResult {
        guard let frame = ExceptionFrame(cpu: cpu, hasErrorCode: false, memory: ram),
              frame.cs & 3 == cpu.cs.selector & 3 else { return .notOurs }
        var at = frame.unwound(cpu)
        guard case let .success(insn) = VMXDecoder.decode(fetchInstruction(at: frame.rip, cpu: at), state: at) else {
            return .notOurs
        }
        let execution = VMXSemantics.execute(insn, cpu: &at, vmx: &vmx, memory: ram)
        describe(execution, in: &note)
        note.kind = .debug
        switch execution.result {
        case .succeed, .failInvalid, .failValid:
            at.store(into: &vcpu.sync.pointee.regs)
            vcpu.markDirty(.regs)
            return .handled
        case .fault(.invalidOpcode):
            return .notOurs                    // the #UD stands: let the handler run
        case let .fault(exception):
            // Deliver `exception` instead of the #UD: unwind, then inject.
            frame.unwound(cpu).store(into: &vcpu.sync.pointee.regs)
            vcpu.markDirty(.regs)
            inject(exception)
            return .handled
        case .vmEntry:
            return .stop(Self.entryNotImplemented(insn.instruction))
        }
    }
}
