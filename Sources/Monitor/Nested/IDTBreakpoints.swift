import KVM
import NestedVMX

/// Trap channel (b) of DESIGN.md: hardware breakpoints on L1's own #GP and
/// #UD handlers. L0 finds the handlers by walking IDTR and the IDT through
/// L1's page tables (SDM Vol. 3A 6.14.1, 64-bit IDT gates) and re-arms the
/// debug registers whenever IDTR, CR3 or a handler's gate changes.
struct IDTBreakpoints {
    static let gpVector = 13
    static let udVector = 6

    /// Watch #GP too (L1, for CR4.VMXE), or only #UD (L2, for VMCALL).
    let watchGP: Bool

    init(watchGP: Bool) { self.watchGP = watchGP }
    private(set) var gpHandler: UInt64?
    private(set) var udHandler: UInt64?
    private var idtr = TableRegister(base: .max, limit: 0)
    private var cr3: UInt64 = .max
    /// Guest-physical addresses of the two gates, valid while IDTR and CR3 hold.
    private var gpGate: UInt64?
    private var udGate: UInt64?

    /// Re-reads the gates (re-walking only when IDTR or CR3 changed); true
    /// when a handler address changed and the debug registers need arming.
    mutating func refresh(cpu: CPUState, memory: some GuestMemoryAccess) -> Bool {
        if cpu.idtr != idtr || cpu.cr3 != cr3 {
            idtr = cpu.idtr
            cr3 = cpu.cr3
            gpGate = gateAddress(Self.gpVector, cpu: cpu, memory: memory)
            udGate = gateAddress(Self.udVector, cpu: cpu, memory: memory)
        }
        let gp = watchGP ? gpGate.flatMap { Self.handler(at: $0, memory: memory) } : nil
        let ud = udGate.flatMap { Self.handler(at: $0, memory: memory) }
        guard gp != gpHandler || ud != udHandler else { return false }
        gpHandler = gp
        udHandler = ud
        return true
    }

    /// DR0 = #GP handler, DR1 = #UD handler, as execute breakpoints (DR7 L0, L1).
    var debugRegisters: [UInt64] {
        var dr7: UInt64 = 0
        if gpHandler != nil { dr7 |= 1 << 0 }
        if udHandler != nil { dr7 |= 1 << 2 }
        return [gpHandler ?? 0, udHandler ?? 0, 0, 0, 0, 0, 0, dr7]
    }

    /// Where gate `vector` lives: IA-32e IDT entries are 16 bytes. Only
    /// IA-32e mode is handled; in legacy modes no breakpoints are armed.
    private func gateAddress(_ vector: Int, cpu: CPUState, memory: some GuestMemoryAccess) -> UInt64? {
        guard cpu.longModeActive, UInt64(vector * 16 + 15) <= UInt64(cpu.idtr.limit) else { return nil }
        let linear = cpu.idtr.base &+ UInt64(vector * 16)
        guard linear & 0xfff <= 0xff0,
              case let .success(physical) = PageWalker.translate(linear, access: MemoryAccess(), state: cpu, memory: memory,
                                                                 setAccessedDirty: false) else { return nil }
        return physical
    }

    /// The handler offset of the present 64-bit interrupt or trap gate at `gate`.
    private static func handler(at gate: UInt64, memory: some GuestMemoryAccess) -> UInt64? {
        guard let lo = memory.load(UInt64.self, at: gate), let hi = memory.load(UInt64.self, at: gate + 8) else { return nil }
        let present = lo & (1 << 47) != 0
        let type = (lo >> 40) & 0xf
        guard present, type == 0xe || type == 0xf else { return nil }
        return (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi & 0xffff_ffff) << 32
    }
}
