import KVM
import NestedVMX

/// Trap channel (b) of docs/ARCHITECTURE.md: execute breakpoints on a guest's own
/// exception handlers, one debug register per vector (at most four). L0 finds
/// the handlers by walking IDTR and the IDT through the guest's page tables
/// (SDM Vol. 3A 6.11 and 6.14.1: 32-bit and 64-bit interrupt and trap
/// gates; task gates and 16-bit gates get none) and re-arms the debug registers
/// whenever IDTR, CR3, the watched vectors or a handler's gate changes.
/// L1: #GP (CR4.VMXE) and #UD (VMX instructions). L2: #UD (VMCALL) and the
/// vectors of L1's exception bitmap.
struct IDTBreakpoints {
    static let gpVector = 13
    static let udVector = 6
    static let bpVector = 3
    static let maximumVectors = 4

    private(set) var vectors: [Int]
    /// The handler of each watched vector, where its gate is present, in
    /// `vectors` order. Arrays, not dictionaries: this is read before every
    /// entry (docs/PERFORMANCE.md).
    private var handlers: [UInt64?]
    /// Handlers of vectors no longer watched were armed: the next refresh re-arms.
    private var unwatchedArmed = false
    /// Guest-physical addresses of the gates, in `vectors` order, valid while the key holds.
    private var gates: [UInt64?] = []

    init(vectors: [Int]) {
        self.vectors = Array(vectors.prefix(Self.maximumVectors))
        handlers = Array(repeating: nil, count: self.vectors.count)
    }

    /// The handler of `vector`, if it is watched and its gate is present.
    func handler(of vector: Int) -> UInt64? {
        guard let i = vectors.firstIndex(of: vector), i < handlers.count else { return nil }
        return handlers[i]
    }

    var gpHandler: UInt64? { handler(of: Self.gpVector) }
    var udHandler: UInt64? { handler(of: Self.udVector) }

    /// The watched vector whose handler starts at `address`.
    func vector(atHandler address: UInt64) -> Int? {
        zip(vectors, handlers).first { $0.1 == address }?.0
    }

    /// Watches `newVectors` from now on (forcing a re-walk).
    mutating func watch(_ newVectors: [Int]) {
        let trimmed = Array(newVectors.prefix(Self.maximumVectors))
        guard trimmed != vectors else { return }
        vectors = trimmed
        unwatchedArmed = unwatchedArmed || handlers.contains { $0 != nil }
        handlers = Array(repeating: nil, count: trimmed.count)
        key = nil
    }

    /// What decides where the gates are: IDTR, CR3 and the mode. Cheap to
    /// take from the special registers, so that the refresh before every
    /// entry builds no `CPUState` while they hold (docs/PERFORMANCE.md).
    struct Key: Equatable {
        var idtr: TableRegister
        var cr3: UInt64
        var protectedMode, virtual8086, longModeActive: Bool

        init(_ cpu: CPUState) {
            self.init(idtr: cpu.idtr, cr3: cpu.cr3, protectedMode: cpu.protectedMode, virtual8086: cpu.virtual8086,
                      longModeActive: cpu.longModeActive)
        }

        init(idtr: TableRegister, cr3: UInt64, protectedMode: Bool, virtual8086: Bool, longModeActive: Bool) {
            self.idtr = idtr; self.cr3 = cr3
            self.protectedMode = protectedMode; self.virtual8086 = virtual8086; self.longModeActive = longModeActive
        }
    }
    private var key: Key?

    /// Re-reads the gates (re-walking only when the key changed); true
    /// when a handler address changed and the debug registers need arming.
    mutating func refresh(cpu: CPUState, memory: some GuestMemoryAccess) -> Bool {
        refresh(key: Key(cpu), cpu: { cpu }, memory: memory)
    }

    /// The same, asking for the whole state only to walk the guest's paging
    /// (a changed key, or 32-bit gates, whose handlers need the GDT).
    mutating func refresh(key now: Key, cpu: () -> CPUState, memory: some GuestMemoryAccess) -> Bool {
        var state: CPUState?
        func whole() -> CPUState {
            if let state { return state }
            let s = cpu()
            state = s
            return s
        }
        if now != key {
            key = now
            gates = vectors.map { Self.gateAddress($0, key: now, cpu: whole, memory: memory) }
        }
        let long = now.longModeActive
        // Called before every entry: nothing is allocated unless a handler moved.
        var moved = unwatchedArmed
        for i in gates.indices where !moved
            && gates[i].flatMap({ Self.handler(at: $0, longMode: long, cpu: whole, memory: memory) }) != handlers[i] {
            moved = true
        }
        guard moved else { return false }
        handlers = gates.map { $0.flatMap { Self.handler(at: $0, longMode: long, cpu: whole, memory: memory) } }
        unwatchedArmed = false
        return true
    }

    /// The present interrupt or trap gate of watched `vector`, read again
    /// where the last refresh found it.
    func gate(of vector: Int, longMode: Bool, memory: some GuestMemoryAccess) -> IDTGate? {
        guard let i = vectors.firstIndex(of: vector), i < gates.count, let at = gates[i] else { return nil }
        return Self.gate(at: at, longMode: longMode, memory: memory)
    }

    /// The present interrupt or trap gate at guest-physical `at`.
    private static func gate(at: UInt64, longMode: Bool, memory: some GuestMemoryAccess) -> IDTGate? {
        guard let low = memory.load(UInt64.self, at: at) else { return nil }
        var high: UInt64?
        if longMode {
            guard let hi = memory.load(UInt64.self, at: at + 8) else { return nil }
            high = hi
        }
        let g = IDTGate(low: low, high: high)
        return g.present && g.isInterruptOrTrapGate ? g : nil
    }

    /// DR0-DR3 on the handlers in `vectors` order, as execute breakpoints
    /// (DR7 local enables, R/W and LEN 0).
    var debugRegisters: [UInt64] {
        var regs = [UInt64](repeating: 0, count: 8)
        for (i, h) in handlers.enumerated() {
            guard let h else { continue }
            regs[i] = h
            regs[7] |= 1 << UInt64(2 * i)
        }
        return regs
    }

    /// Where gate `vector` lives: 16-byte gates in IA-32e mode, 8-byte
    /// gates in protected mode; none in real or virtual-8086 mode.
    private static func gateAddress(_ vector: Int, key: Key, cpu: () -> CPUState, memory: some GuestMemoryAccess) -> UInt64? {
        guard key.protectedMode, !key.virtual8086 else { return nil }
        let size = key.longModeActive ? 16 : 8
        guard UInt64(vector * size + size - 1) <= UInt64(key.idtr.limit) else { return nil }
        return Self.physical(key.idtr.base &+ UInt64(vector * size), bytes: size, cpu: cpu(), memory: memory)
    }

    private static func physical(_ linear: UInt64, bytes: Int, cpu: CPUState, memory: some GuestMemoryAccess) -> UInt64? {
        guard linear & 0xfff <= UInt64(0x1000 - bytes),
              case let .success(physical) = PageWalker.translate(linear, access: MemoryAccess(), state: cpu, memory: memory,
                                                                 setAccessedDirty: false) else { return nil }
        return physical
    }

    /// The linear address of the handler of the present interrupt or trap
    /// gate at `gate`: the offset, plus in protected mode the base of the
    /// gate's code segment from the GDT (64-bit code segments have base 0).
    private static func handler(at gate: UInt64, longMode: Bool, cpu whole: () -> CPUState, memory: some GuestMemoryAccess) -> UInt64? {
        guard let g = Self.gate(at: gate, longMode: longMode, memory: memory) else { return nil }
        if longMode { return g.offset }
        let cpu = whole()
        // Not GDT.descriptor: L0's look here must not set accessed flags in
        // the guest's page tables, so it translates without them.
        let selector = UInt64(g.selector)
        guard selector & 4 == 0, selector | 7 <= UInt64(cpu.gdtr.limit),           // LDT selectors: no breakpoint
              let entry = physical(cpu.gdtr.base &+ (selector & ~7), bytes: 8, cpu: cpu, memory: memory),
              let descriptor = memory.load(UInt64.self, at: entry) else { return nil }
        return (GDT.base(of: descriptor) &+ g.offset) & 0xffff_ffff
    }
}
