import VMXArch

/// Delivery of a software interrupt or exception through the IDT, as the
/// processor carries out INT n, INT3, INTO and INT1 in protected mode (SDM
/// Vol. 2A "INT n/INTO/INT3/INT1"; Vol. 3A 6.12.1, and 6.14 for IA-32e
/// mode): the gate and code-segment checks, a stack switch to the TSS's
/// stack for a more privileged handler (or to an IST stack), the frame, and
/// the handler's state. KVM's emulator does not do this on our hosts
/// (README, "What does not work yet").
///
/// Not modelled: task gates and 16-bit gates (#GP with the IDT error code,
/// documented), LDT code segments, and the limit checks of a legacy stack
/// segment.
public enum InterruptDelivery {
    public enum Failure: Error, Equatable, Sendable {
        /// The delivery raises this exception, which the processor then delivers.
        case exception(X86Exception)
        /// A table, TSS or stack page is not RAM (for L2: not mapped by EPT12).
        case notRAM(physical: UInt64)
    }

    /// The state after delivering `vector`, the frame written to `memory`.
    /// `softwareInterrupt` is INT n, INT3 or INTO, which the gate's DPL
    /// guards against CPL (INT1 is not); `returnRIP` is the instruction after it.
    public static func deliver(vector: UInt8, softwareInterrupt: Bool, returnRIP: UInt64, cpu: CPUState,
                               memory: some GuestMemoryAccess) -> Result<CPUState, Failure> {
        do throws(Failure) {
            return .success(try deliver(vector, softwareInterrupt, returnRIP, cpu, memory))
        } catch {
            return .failure(error)
        }
    }

    static func deliver(_ vector: UInt8, _ softwareInterrupt: Bool, _ returnRIP: UInt64, _ cpu: CPUState,
                        _ memory: some GuestMemoryAccess) throws(Failure) -> CPUState {
        let ia32e = cpu.longModeActive
        // Error codes name the IDT entry (bit 1); EXT (bit 0) is set for INT1,
        // which the SDM treats as an external event for this purpose.
        let idtError = UInt32(vector) << 3 | 2 | (softwareInterrupt ? 0 : 1)
        let gateSize: UInt64 = ia32e ? 16 : 8
        guard UInt64(vector) * gateSize + gateSize - 1 <= UInt64(cpu.idtr.limit) else { throw .exception(.generalProtection(idtError)) }
        let raw = try read(cpu.idtr.base &+ UInt64(vector) * gateSize, count: Int(gateSize), cpu, memory)
        let gate = IDTGate(low: raw.littleEndian(at: 0, count: 8), high: ia32e ? raw.littleEndian(at: 8, count: 8) : nil)
        guard gate.isInterruptOrTrapGate else { throw .exception(.generalProtection(idtError)) }
        if softwareInterrupt && gate.dpl < cpu.cpl { throw .exception(.generalProtection(idtError)) }
        guard gate.present else { throw .exception(X86Exception(vector: 11, errorCode: idtError)) }
        let offset = gate.offset, ist = gate.ist, type = gate.type

        // The handler's code segment (Vol. 3A 6.12.1.1).
        let selector = gate.selector
        let selectorError = UInt32(selector & 0xfffc) | (softwareInterrupt ? 0 : 1)
        guard selector & 0xfffc != 0 else { throw .exception(.generalProtection(softwareInterrupt ? 0 : 1)) }
        guard selector & 4 == 0, UInt64(selector & 0xfff8) + 7 <= UInt64(cpu.gdtr.limit) else {
            throw .exception(.generalProtection(selectorError))
        }
        let code = try read(cpu.gdtr.base &+ UInt64(selector & 0xfff8), count: 8, cpu, memory).littleEndian()
        var cs = SegmentState(descriptor: code, selector: selector)
        guard cs.s, cs.type & 8 != 0, cs.dpl <= cpu.cpl, !ia32e || (cs.l && !cs.db) else {
            throw .exception(.generalProtection(selectorError))
        }
        guard cs.present else { throw .exception(X86Exception(vector: 11, errorCode: selectorError)) }
        let conforming = cs.type & 4 != 0
        let newCPL = conforming ? cpu.cpl : cs.dpl
        cs.selector = selector & 0xfffc | UInt16(newCPL)

        var s = cpu
        let word: UInt64 = ia32e ? 8 : 4
        var frame: [UInt64]
        var stack: UInt64
        if ia32e {
            // 6.14.4, 6.14.5: the IST stack, else RSPn of the TSS on a privilege
            // change, else the current one; aligned to 16 bytes; SS:RSP always pushed.
            if ist != 0 {
                stack = try read(cpu.tr.base &+ 0x24 &+ UInt64(ist - 1) * 8, count: 8, cpu, memory).littleEndian()
            } else if newCPL < cpu.cpl {
                stack = try read(cpu.tr.base &+ 4 &+ UInt64(newCPL) * 8, count: 8, cpu, memory).littleEndian()
            } else {
                stack = cpu.gprs[.rsp]
            }
            stack &= ~0xf
            frame = [UInt64(cpu.ss.selector), cpu.gprs[.rsp], cpu.rflags, UInt64(cpu.cs.selector), returnRIP]
            if newCPL < cpu.cpl {
                s.ss = SegmentState(selector: UInt16(newCPL), limit: 0, type: 3, dpl: newCPL, present: false, unusable: true)
            }
        } else if newCPL < cpu.cpl {
            // 6.12.1: SS:ESP for the new level from the 32-bit TSS.
            let pair = try read(cpu.tr.base &+ 4 &+ UInt64(newCPL) * 8, count: 8, cpu, memory).littleEndian()
            let ssSelector = UInt16(truncatingIfNeeded: pair >> 32)
            let tssError = UInt32(ssSelector & 0xfffc) | (softwareInterrupt ? 0 : 1)
            guard ssSelector & 0xfffc != 0, ssSelector & 4 == 0, UInt64(ssSelector & 0xfff8) + 7 <= UInt64(cpu.gdtr.limit) else {
                throw .exception(X86Exception(vector: 10, errorCode: tssError))                      // #TS
            }
            let ss = SegmentState(descriptor: try read(cpu.gdtr.base &+ UInt64(ssSelector & 0xfff8), count: 8, cpu, memory).littleEndian(),
                                  selector: ssSelector)
            guard ss.s, ss.type & 0xa == 2, ss.dpl == newCPL, UInt8(ssSelector & 3) == newCPL else {
                throw .exception(X86Exception(vector: 10, errorCode: tssError))
            }
            guard ss.present else { throw .exception(.stackFault(tssError)) }
            stack = ss.base &+ (pair & 0xffff_ffff)
            frame = [UInt64(cpu.ss.selector), cpu.gprs[.rsp] & 0xffff_ffff, cpu.rflags & 0xffff_ffff, UInt64(cpu.cs.selector),
                     returnRIP & 0xffff_ffff]
            s.ss = ss
            s.gprs[.rsp] = pair & 0xffff_ffff
        } else {
            stack = cpu.ss.base &+ (cpu.gprs[.rsp] & 0xffff_ffff)
            frame = [cpu.rflags & 0xffff_ffff, UInt64(cpu.cs.selector), returnRIP & 0xffff_ffff]
        }

        // The frame, highest address first (Figures 6-4, 6-9).
        let size = UInt64(frame.count) * word
        let top = stack &- size
        let bytes = frame.reversed().flatMap { [UInt8](littleEndian: $0, count: Int(word)) }
        var supervisor = cpu
        supervisor.ss.dpl = newCPL
        switch PageWalker.writeLinear(ia32e ? top : top & 0xffff_ffff, bytes: bytes, access: MemoryAccess(write: true),
                                      state: supervisor, memory: memory) {
        case .success: break
        case let .failure(.fault(e)): throw .exception(e)
        case let .failure(.notRAM(physical)): throw .notRAM(physical: physical)
        }
        if ia32e {
            s.gprs[.rsp] = top
        } else {
            s.gprs[.rsp] = (s.gprs[.rsp] & ~0xffff_ffff) | ((top &- s.ss.base) & 0xffff_ffff)
        }
        s.cs = cs
        s.rip = offset
        // TF, NT, RF and VM are cleared; an interrupt gate clears IF too (6.12.1.3).
        s.rflags &= ~(UInt64(1) << 8 | 1 << 14 | 1 << 16 | 1 << 17 | (type == 0xe ? 1 << 9 : 0))
        return s
    }

    /// `count` bytes at a linear address, read as the processor does for
    /// system structures (supervisor, no accessed flags set).
    static func read(_ linear: UInt64, count: Int, _ cpu: CPUState, _ memory: some GuestMemoryAccess) throws(Failure) -> [UInt8] {
        var supervisor = cpu
        supervisor.ss.dpl = 0
        switch PageWalker.readLinear(linear, count: count, access: MemoryAccess(), state: supervisor, memory: memory) {
        case let .success(bytes): return bytes
        case let .failure(.fault(e)): throw .exception(e)
        case let .failure(.notRAM(physical)): throw .notRAM(physical: physical)
        }
    }
}

extension SegmentState {
    /// The hidden part a segment descriptor loads (SDM Vol. 3A 3.4.5): base,
    /// limit in bytes (G applied), and the access rights.
    public init(descriptor d: UInt64, selector: UInt16) {
        let rawLimit = UInt32((d & 0xffff) | ((d >> 32) & 0xf_0000))
        let g = d & 1 << 55 != 0
        self.init(selector: selector, base: GDT.base(of: d), limit: g ? rawLimit << 12 | 0xfff : rawLimit)
        accessRights = UInt32((d >> 40) & 0xf0ff)
    }
}
