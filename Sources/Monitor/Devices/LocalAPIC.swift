/// 256 interrupt vectors as a bit set (the APIC's IRR and ISR).
struct VectorSet {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    private func word(_ i: Int) -> UInt64 {
        switch i { case 0: words.0; case 1: words.1; case 2: words.2; default: words.3 }
    }
    private mutating func setWord(_ i: Int, _ v: UInt64) {
        switch i { case 0: words.0 = v; case 1: words.1 = v; case 2: words.2 = v; default: words.3 = v }
    }
    func contains(_ v: UInt8) -> Bool { word(Int(v) >> 6) & (1 << UInt64(v & 63)) != 0 }
    mutating func insert(_ v: UInt8) { setWord(Int(v) >> 6, word(Int(v) >> 6) | (1 << UInt64(v & 63))) }
    mutating func remove(_ v: UInt8) { setWord(Int(v) >> 6, word(Int(v) >> 6) & ~(1 << UInt64(v & 63))) }
    /// The highest vector in the set.
    var highest: UInt8? {
        for i in stride(from: 3, through: 0, by: -1) where word(i) != 0 {
            return UInt8(i * 64 + 63 - word(i).leadingZeroBitCount)
        }
        return nil
    }
    /// The 32 bits at APIC register index `i` (IRR/ISR/TMR are 8 such registers).
    func register(_ i: Int) -> UInt32 { UInt32(truncatingIfNeeded: word(i / 2) >> (32 * UInt64(i % 2))) }
}

/// A local xAPIC emulated in userspace (Intel SDM Vol. 3A, chapter 11),
/// at the MMIO page 0xfee00000, for the one vCPU.
///
/// Userspace rather than KVM's in-kernel irqchip because L0 must see every
/// interrupt it delivers to L1 (for external-interrupt exiting and interrupt
/// windows once L1 runs L2) and because HLT must reach L0 (KVM keeps HLT to
/// itself when it owns the APIC).
///
/// Supported: ID, version, TPR/PPR, EOI, SVR, ISR/IRR, ESR, the LVT registers,
/// ICR self-IPIs with fixed delivery, and the timer in one-shot and periodic
/// modes on a 1 GHz bus clock. Not supported: TSC-deadline mode (CPUID does not
/// advertise it), x2APIC, NMI/SMI/INIT delivery modes, and relocating the base.
public final class LocalAPIC: MMIODevice {
    public static let defaultBase: UInt64 = 0xfee0_0000
    /// IA32_APIC_BASE (MSR 0x1b) bits (SDM Vol. 3A 11.4.4).
    public static let baseBSP: UInt64 = 1 << 8
    public static let baseEnable: UInt64 = 1 << 11

    enum Reg {
        static let id: UInt64 = 0x20, version: UInt64 = 0x30, tpr: UInt64 = 0x80, apr: UInt64 = 0x90
        static let ppr: UInt64 = 0xa0, eoi: UInt64 = 0xb0, ldr: UInt64 = 0xd0, dfr: UInt64 = 0xe0
        static let svr: UInt64 = 0xf0, isr: UInt64 = 0x100, tmr: UInt64 = 0x180, irr: UInt64 = 0x200
        static let esr: UInt64 = 0x280, lvtCMCI: UInt64 = 0x2f0, icrLow: UInt64 = 0x300, icrHigh: UInt64 = 0x310
        static let lvtTimer: UInt64 = 0x320, lvtError: UInt64 = 0x370
        static let initialCount: UInt64 = 0x380, currentCount: UInt64 = 0x390, divide: UInt64 = 0x3e0
    }
    static let lvtMasked: UInt32 = 1 << 16

    public private(set) var baseMSR: UInt64 = LocalAPIC.defaultBase | LocalAPIC.baseEnable | LocalAPIC.baseBSP
    var irr = VectorSet()
    var isr = VectorSet()
    /// The task priority, which L2's MOV CR8 reads and writes too (docs/PATCHING.md).
    var tpr: UInt32 = 0
    private var svr: UInt32 = 0xff
    private var ldr: UInt32 = 0
    private var dfr: UInt32 = 0xffff_ffff
    /// The ESR as software reads it: the errors latched by the last ESR write (SDM 11.5.3).
    private var esr: UInt32 = 0
    /// Errors detected since the last ESR write.
    private var esrPending: UInt32 = 0
    private var icrHigh: UInt32 = 0
    private var icrLow: UInt32 = 0
    /// LVT registers 0x2f0 and 0x320...0x370, indexed by (offset - 0x320) / 16, CMCI last.
    private var lvt = [UInt32](repeating: LocalAPIC.lvtMasked, count: 7)
    private var initialCount: UInt32 = 0
    private var divideConfig: UInt32 = 0
    /// Host-clock nanosecond at which the timer next fires.
    public private(set) var timerDeadline: UInt64?
    private let now: () -> UInt64

    /// `now` gives nanoseconds on a monotonic clock; tests pass a fake one.
    public init(now: @escaping () -> UInt64) { self.now = now }

    private var softwareEnabled: Bool { svr & 0x100 != 0 }
    private var globallyEnabled: Bool { baseMSR & LocalAPIC.baseEnable != 0 }
    private var timerLVT: UInt32 { lvt[0] }

    // MARK: IA32_APIC_BASE

    /// WRMSR to IA32_APIC_BASE; false means the write raises #GP: reserved bits
    /// (including x2APIC enable, bit 10), or a different base, which is not supported.
    public func writeBaseMSR(_ value: UInt64) -> Bool {
        let reserved: UInt64 = 0xff | (1 << 9) | (1 << 10) | ~((1 << 52) - 1)
        guard value & reserved == 0, value & ~0xfff == LocalAPIC.defaultBase else { return false }
        baseMSR = (value & ~LocalAPIC.baseBSP) | LocalAPIC.baseBSP
        return true
    }

    // MARK: Interrupt delivery (SDM Vol. 3A 11.8)

    /// Processor priority: the higher of TPR and the highest in-service class.
    private var ppr: UInt32 {
        let isrClass = UInt32(isr.highest ?? 0) & 0xf0
        return (tpr & 0xf0) >= isrClass ? tpr & 0xff : isrClass
    }

    /// The vector the APIC would deliver now, if any.
    public var deliverableVector: UInt8? {
        guard globallyEnabled, softwareEnabled, let v = irr.highest else { return nil }
        return UInt32(v) & 0xf0 > ppr & 0xf0 ? v : nil
    }

    /// The CPU accepted `vector`: it moves from IRR to ISR.
    public func acknowledge(_ vector: UInt8) {
        irr.remove(vector)
        isr.insert(vector)
    }

    /// Raises `vector` in the IRR; vectors 0-15 are illegal (ESR bit 6).
    public func raise(_ vector: UInt8) {
        guard vector >= 16 else { esrPending |= 1 << 6; return }
        irr.insert(vector)
    }

    public var hasPendingInterrupt: Bool { irr.highest != nil }

    // MARK: Timer (SDM Vol. 3A 11.5.4)

    /// Nanoseconds per timer tick: the divide configuration on a 1 GHz bus.
    private var tickNanos: UInt64 {
        let code = (divideConfig & 3) | ((divideConfig & 8) >> 1)
        return code == 7 ? 1 : 2 << UInt64(code)
    }
    private var timerPeriodic: Bool { (timerLVT >> 17) & 3 == 1 }

    /// Fires the timer if its deadline has passed by `time`; true if it fired.
    @discardableResult
    public func updateTimer(at time: UInt64) -> Bool {
        guard let deadline = timerDeadline, deadline <= time else { return false }
        fireTimer(at: time)
        return true
    }

    /// Fires the timer now, whatever its deadline: used when the vCPU halts
    /// and nothing but the timer can wake it, so idle time is skipped.
    public func fireTimer(at time: UInt64) {
        guard let deadline = timerDeadline else { return }
        if timerLVT & LocalAPIC.lvtMasked == 0 { raise(UInt8(truncatingIfNeeded: timerLVT)) }
        if timerPeriodic {
            let period = UInt64(initialCount) * tickNanos
            let next = max(deadline, time) &+ period
            timerDeadline = next
        } else {
            timerDeadline = nil
        }
    }

    private var currentCount: UInt32 {
        guard let deadline = timerDeadline else { return 0 }
        let t = now()
        return deadline <= t ? 0 : UInt32(clamping: (deadline - t) / tickNanos)
    }

    // MARK: MMIO (SDM Vol. 3A Table 11-1)

    public func read(offset: UInt64, size: UInt8) -> UInt64 {
        guard size == 4, offset & 0xf == 0 else { return 0 }
        switch offset {
        case Reg.id: return 0
        case Reg.version: return 0x0005_0014       // version 0x14, 6 LVT entries
        case Reg.tpr: return UInt64(tpr)
        case Reg.apr: return 0
        case Reg.ppr: return UInt64(ppr)
        case Reg.ldr: return UInt64(ldr)
        case Reg.dfr: return UInt64(dfr)
        case Reg.svr: return UInt64(svr)
        case Reg.isr..<Reg.isr + 0x80: return UInt64(isr.register(Int((offset - Reg.isr) / 16)))
        case Reg.irr..<Reg.irr + 0x80: return UInt64(irr.register(Int((offset - Reg.irr) / 16)))
        case Reg.esr: return UInt64(esr)
        case Reg.lvtCMCI: return UInt64(lvt[6])
        case Reg.icrLow: return UInt64(icrLow & ~(1 << 12))   // delivery always complete
        case Reg.icrHigh: return UInt64(icrHigh)
        case Reg.lvtTimer...Reg.lvtError: return UInt64(lvt[Int((offset - Reg.lvtTimer) / 16)])
        case Reg.initialCount: return UInt64(initialCount)
        case Reg.currentCount: return UInt64(currentCount)
        case Reg.divide: return UInt64(divideConfig)
        default: return 0
        }
    }

    public func write(offset: UInt64, size: UInt8, value: UInt64) -> DeviceEffect {
        guard size == 4, offset & 0xf == 0 else { return .none }
        let v = UInt32(truncatingIfNeeded: value)
        switch offset {
        case Reg.tpr: tpr = v & 0xff
        case Reg.eoi: if let v = isr.highest { isr.remove(v) }
        case Reg.ldr: ldr = v & 0xff00_0000
        case Reg.dfr: dfr = v | 0x0fff_ffff
        case Reg.svr:
            svr = v & 0x13ff
            if !softwareEnabled { for i in lvt.indices { lvt[i] |= LocalAPIC.lvtMasked } }
        case Reg.esr: esr = esrPending; esrPending = 0   // a write latches, then clears
        case Reg.icrHigh: icrHigh = v & 0xff00_0000
        case Reg.icrLow:
            icrLow = v & 0x000c_ffff
            sendIPI()
        case Reg.lvtCMCI: lvt[6] = softwareEnabled ? v & 0x1_07ff : (v & 0x1_07ff) | LocalAPIC.lvtMasked
        case Reg.lvtTimer...Reg.lvtError:
            let i = Int((offset - Reg.lvtTimer) / 16)
            let writable: UInt32 = i == 0 ? 0x7_00ff : 0x1_a7ff
            lvt[i] = softwareEnabled ? v & writable : (v & writable) | LocalAPIC.lvtMasked
        case Reg.initialCount:
            initialCount = v
            timerDeadline = v == 0 ? nil : now() &+ UInt64(v) * tickNanos
        case Reg.divide:
            divideConfig = v & 0xb
        default: break                              // read-only or reserved
        }
        return .none
    }

    /// ICR write: fixed-mode IPIs that reach this CPU (SDM Vol. 3A 11.6.1).
    private func sendIPI() {
        let vector = UInt8(truncatingIfNeeded: icrLow)
        let mode = (icrLow >> 8) & 7
        guard mode == 0 else { return }                    // only fixed delivery
        let shorthand = (icrLow >> 18) & 3
        let toSelf: Bool
        switch shorthand {
        case 1, 2: toSelf = true                            // self; all including self
        case 3: toSelf = false                              // all excluding self: nobody
        default: toSelf = icrHigh >> 24 == 0 || icrHigh >> 24 == 0xff
        }
        if toSelf { raise(vector) }
    }
}
