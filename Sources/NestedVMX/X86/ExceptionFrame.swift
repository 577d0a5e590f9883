import VMXArch

/// The stack frame an exception delivery pushed, read at the handler's RSP.
/// IA-32e mode (SDM Vol. 3A 6.14.2): [error code,] RIP, CS, RFLAGS, RSP,
/// SS, 8 bytes each. Protected mode (6.12.1): [error code,] EIP, CS,
/// EFLAGS, 4 bytes each, then ESP and SS only when the privilege level
/// changed; otherwise they are the handler's own.
public struct ExceptionFrame: Equatable, Sendable {
    public var errorCode: UInt64?
    public var rip: UInt64, cs: UInt64, rflags: UInt64, rsp: UInt64, ss: UInt64

    /// Reads the frame at the handler's RSP; nil if it is not readable.
    public init?(cpu: CPUState, hasErrorCode: Bool, memory: some GuestMemoryAccess) {
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
    public func unwound(_ cpu: CPUState) -> CPUState {
        var s = cpu
        s.rip = rip
        s.rflags = rflags
        s.gprs[.rsp] = rsp
        return s
    }

    /// The state before a delivery that may have changed the privilege
    /// level: when the frame's CS is not the handler's, CS and SS are
    /// reloaded from the GDT as the frame names them (SDM Vol. 3A 6.12.1,
    /// 6.14.2), accessed as loading them makes them (3.4.5.1); a null SS
    /// (IA-32e mode) is unusable. nil when a descriptor cannot be read.
    public func unwound(_ cpu: CPUState, memory: some GuestMemoryAccess) -> CPUState? {
        var s = unwound(cpu)
        let codeSelector = UInt16(truncatingIfNeeded: cs), stackSelector = UInt16(truncatingIfNeeded: ss)
        guard codeSelector != cpu.cs.selector else { return s }
        guard let code = GDT.descriptor(cs, cpu: cpu, memory: memory) else { return nil }
        s.cs = SegmentState(descriptor: code, selector: codeSelector)
        s.cs.type |= 1
        if stackSelector & 0xfffc == 0 {
            s.ss = SegmentState(selector: stackSelector, dpl: UInt8(stackSelector & 3), unusable: true)
        } else {
            guard let stack = GDT.descriptor(ss, cpu: cpu, memory: memory) else { return nil }
            s.ss = SegmentState(descriptor: stack, selector: stackSelector)
            s.ss.type |= 1
        }
        return s
    }

    /// The frame an exception delivery pushed for the instruction at `rip`
    /// in code segment `cs`: found by those two values within `words` words
    /// above the handler's RSP (an error code, and what the handler's first
    /// instructions pushed), with the linear address of its saved RFLAGS.
    /// nil when no slot matches.
    public static func pushed(for rip: UInt64, cs: UInt16, cpu: CPUState, memory: some GuestMemoryAccess,
                              words: Int = 4) -> (frame: ExceptionFrame, rflagsAddress: UInt64)? {
        let word: UInt64 = cpu.longModeActive ? 8 : 4
        var at = cpu
        for skipped in 0...words {
            at.gprs[.rsp] = cpu.gprs[.rsp] &+ word * UInt64(skipped)
            guard let frame = ExceptionFrame(cpu: at, hasErrorCode: false, memory: memory),
                  frame.rip == rip, UInt16(truncatingIfNeeded: frame.cs) == cs else { continue }
            let stack = cpu.longModeActive ? at.gprs[.rsp] : at.gprs[.rsp] & 0xffff_ffff
            return (frame, stack &+ 2 * word)
        }
        return nil
    }
}
