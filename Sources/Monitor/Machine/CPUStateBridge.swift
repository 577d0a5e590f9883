import KVM
import NestedVMX

/// Conversions between the vCPU seam's register values (KVM module) and the
/// core's `CPUState`.
extension SegmentState {
    /// A usable code or data segment is accessed: loading it sets the
    /// accessed bit (SDM Vol. 3A 3.4.5.1), and VM exit saves the type so
    /// (28.3.1). KVM on this backend reports the kernel's CS and SS without
    /// it after an IRETQ from CPL 3 (type 10 and 2, measured 2026-12-06),
    /// which L1's next VM entry would fail (27.3.1.2).
    init(_ s: Segment) {
        let accessed = s.s && !s.unusable ? s.type | 1 : s.type
        self.init(selector: s.selector, base: s.base, limit: s.limit, type: accessed, s: s.s, dpl: s.dpl,
                  present: s.present, avl: s.avl, l: s.l, db: s.db, g: s.g, unusable: s.unusable)
    }
}

extension Segment {
    init(_ s: SegmentState) {
        self.init(base: s.base, limit: s.limit, selector: s.selector, type: s.type, present: s.present, dpl: s.dpl,
                  db: s.db, s: s.s, l: s.l, g: s.g, avl: s.avl, unusable: s.unusable)
    }
}

extension CPUState {
    /// The state of a vCPU as of its last exit.
    init(_ vcpu: any VirtualCPU) {
        self.init(regs: vcpu.registers, sregs: vcpu.specialRegisters, events: vcpu.events)
    }

    init(regs r: Registers, sregs s: SpecialRegisters, events e: VCPUEvents) {
        self.init(special: s)
        setRegisters(r, events: e)
    }

    /// The fields that come from the special registers; the others as `init()` has them.
    init(special s: SpecialRegisters) {
        self.init()
        cr0 = s.cr0; cr2 = s.cr2; cr3 = s.cr3; cr4 = s.cr4; efer = s.efer
        cs = SegmentState(s.cs); ds = SegmentState(s.ds); es = SegmentState(s.es); fs = SegmentState(s.fs)
        gs = SegmentState(s.gs); ss = SegmentState(s.ss); tr = SegmentState(s.tr); ldtr = SegmentState(s.ldt)
        gdtr = TableRegister(base: s.gdt.base, limit: s.gdt.limit)
        idtr = TableRegister(base: s.idt.base, limit: s.idt.limit)
    }

    /// The fields that come from the registers and the events.
    mutating func setRegisters(_ r: Registers, events e: VCPUEvents) {
        gprs[0] = r.rax; gprs[1] = r.rcx; gprs[2] = r.rdx; gprs[3] = r.rbx
        gprs[4] = r.rsp; gprs[5] = r.rbp; gprs[6] = r.rsi; gprs[7] = r.rdi
        gprs[8] = r.r8; gprs[9] = r.r9; gprs[10] = r.r10; gprs[11] = r.r11
        gprs[12] = r.r12; gprs[13] = r.r13; gprs[14] = r.r14; gprs[15] = r.r15
        rip = r.rip
        rflags = r.rflags
        blockingByMovSS = e.shadow.contains(.movSS)
        blockingBySTI = e.shadow.contains(.sti)
        eventInDelivery = DeliveredEvent(e)
    }

    /// Copies the general-purpose registers, RIP and RFLAGS into `r`: all a
    /// retired VMX instruction changes.
    func store(into r: inout Registers) {
        r.rax = gprs[0]; r.rcx = gprs[1]; r.rdx = gprs[2]; r.rbx = gprs[3]
        r.rsp = gprs[4]; r.rbp = gprs[5]; r.rsi = gprs[6]; r.rdi = gprs[7]
        r.r8 = gprs[8]; r.r9 = gprs[9]; r.r10 = gprs[10]; r.r11 = gprs[11]
        r.r12 = gprs[12]; r.r13 = gprs[13]; r.r14 = gprs[14]; r.r15 = gprs[15]
        r.rip = rip
        r.rflags = rflags
    }

    /// Copies the control registers, EFER, segments and descriptor tables
    /// into `s`, leaving the vCPU's own fields (APIC base, CR8) alone.
    func store(into s: inout SpecialRegisters) {
        s.cr0 = cr0; s.cr2 = cr2; s.cr3 = cr3; s.cr4 = cr4; s.efer = efer
        s.cs = Segment(cs); s.ds = Segment(ds); s.es = Segment(es); s.fs = Segment(fs)
        s.gs = Segment(gs); s.ss = Segment(ss); s.tr = Segment(tr); s.ldt = Segment(ldtr)
        s.gdt = DescriptorTable(base: gdtr.base, limit: gdtr.limit)
        s.idt = DescriptorTable(base: idtr.base, limit: idtr.limit)
    }

    /// Loads the general-purpose registers, RIP and RFLAGS into `vcpu`:
    /// every field of `Registers`, so the vCPU's are not read first.
    func storeRegisters(into vcpu: any VirtualCPU) {
        var r = Registers()
        store(into: &r)
        vcpu.registers = r
    }

    /// Loads everything `CPUState` holds into `vcpu`, but the events.
    func storeRegistersAndSegments(into vcpu: any VirtualCPU) {
        storeRegisters(into: vcpu)
        var s = vcpu.specialRegisters
        store(into: &s)
        vcpu.specialRegisters = s
    }
}

extension DeliveredEvent {
    /// The event a vCPU holds as injected, if one is in delivery. KVM treats
    /// #BP and #OF as software exceptions (INT3, INTO); its interrupts are
    /// external unless soft.
    init?(_ e: VCPUEvents) {
        if e.exception.injected {
            let v = e.exception.vector
            self.init(kind: v == 3 || v == 4 ? .softwareException : .hardwareException, vector: v,
                      errorCode: e.exception.errorCode)
        } else if e.nmiInjected {
            self.init(kind: .nmi, vector: 2)
        } else if e.interrupt.injected {
            self.init(kind: e.interrupt.soft ? .softwareInterrupt : .externalInterrupt, vector: e.interrupt.vector)
        } else {
            return nil
        }
    }
}

/// A vCPU's special registers converted to `CPUState` fields, kept while
/// the vCPU's `specialRegistersVersion` stays the same: L0 builds a
/// `CPUState` several times per nested exit, and the eight segments were
/// most of each (docs/PERFORMANCE.md). Holds the vCPU it converted, so
/// another vCPU's equal version number never passes for it.
struct SpecialStateCache {
    private var vcpu: (any VirtualCPU)?
    private var version: UInt64 = 0
    /// The special-register fields of the vCPU's state; the others as `CPUState()` has them.
    private(set) var special = CPUState()

    /// Brings `special` up to date with `vcpu`.
    mutating func refresh(_ vcpu: any VirtualCPU) {
        let now = vcpu.specialRegistersVersion
        if let held = self.vcpu, held === vcpu, now == version { return }
        special = CPUState(special: vcpu.specialRegisters)
        self.vcpu = vcpu
        version = now
    }

    /// The whole state of `vcpu` as of its last exit: `CPUState(vcpu)`.
    mutating func state(of vcpu: any VirtualCPU) -> CPUState {
        refresh(vcpu)
        var s = special
        s.setRegisters(vcpu.registers, events: vcpu.events)
        return s
    }
}
