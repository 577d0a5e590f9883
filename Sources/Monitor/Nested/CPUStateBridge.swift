import CKVM
import NestedVMX

/// Conversions between KVM's register structures and the core's `CPUState`.
extension SegmentState {
    init(_ s: kvm_segment) {
        self.init(selector: s.selector, base: s.base, limit: s.limit, type: s.type, s: s.s != 0, dpl: s.dpl,
                  present: s.present != 0, avl: s.avl != 0, l: s.l != 0, db: s.db != 0, g: s.g != 0,
                  unusable: s.unusable != 0)
    }
}

extension CPUState {
    /// The state of the vCPU from sync regs, sregs and events.
    init(regs r: kvm_regs, sregs s: kvm_sregs, events e: kvm_vcpu_events) {
        self.init()
        gprs[0] = r.rax; gprs[1] = r.rcx; gprs[2] = r.rdx; gprs[3] = r.rbx
        gprs[4] = r.rsp; gprs[5] = r.rbp; gprs[6] = r.rsi; gprs[7] = r.rdi
        gprs[8] = r.r8; gprs[9] = r.r9; gprs[10] = r.r10; gprs[11] = r.r11
        gprs[12] = r.r12; gprs[13] = r.r13; gprs[14] = r.r14; gprs[15] = r.r15
        rip = r.rip
        rflags = r.rflags
        cr0 = s.cr0; cr2 = s.cr2; cr3 = s.cr3; cr4 = s.cr4; efer = s.efer
        cs = SegmentState(s.cs); ds = SegmentState(s.ds); es = SegmentState(s.es); fs = SegmentState(s.fs)
        gs = SegmentState(s.gs); ss = SegmentState(s.ss); tr = SegmentState(s.tr); ldtr = SegmentState(s.ldt)
        gdtr = TableRegister(base: s.gdt.base, limit: s.gdt.limit)
        idtr = TableRegister(base: s.idt.base, limit: s.idt.limit)
        // KVM_X86_SHADOW_INT_MOV_SS = 1, KVM_X86_SHADOW_INT_STI = 2.
        blockingByMovSS = e.interrupt.shadow & 1 != 0
        blockingBySTI = e.interrupt.shadow & 2 != 0
        eventInDelivery = DeliveredEvent(e)
    }

    /// Copies the general-purpose registers, RIP and RFLAGS into `r`: all a
    /// retired VMX instruction changes.
    func store(into r: inout kvm_regs) {
        r.rax = gprs[0]; r.rcx = gprs[1]; r.rdx = gprs[2]; r.rbx = gprs[3]
        r.rsp = gprs[4]; r.rbp = gprs[5]; r.rsi = gprs[6]; r.rdi = gprs[7]
        r.r8 = gprs[8]; r.r9 = gprs[9]; r.r10 = gprs[10]; r.r11 = gprs[11]
        r.r12 = gprs[12]; r.r13 = gprs[13]; r.r14 = gprs[14]; r.r15 = gprs[15]
        r.rip = rip
        r.rflags = rflags
    }
}

extension DeliveredEvent {
    /// KVM's injected event, if one is in delivery. KVM treats #BP and #OF as
    /// software exceptions (INT3, INTO); its interrupts are external unless soft.
    init?(_ e: kvm_vcpu_events) {
        if e.exception.injected != 0 {
            let v = e.exception.nr
            self.init(kind: v == 3 || v == 4 ? .softwareException : .hardwareException, vector: v,
                      errorCode: e.exception.has_error_code != 0 ? e.exception.error_code : nil)
        } else if e.nmi.injected != 0 {
            self.init(kind: .nmi, vector: 2)
        } else if e.interrupt.injected != 0 {
            self.init(kind: e.interrupt.soft != 0 ? .softwareInterrupt : .externalInterrupt, vector: e.interrupt.nr)
        } else {
            return nil
        }
    }
}

extension kvm_vcpu_events {
    /// Drops the event KVM holds as injected (the one `DeliveredEvent`
    /// reads), so the next KVM_RUN delivers none.
    mutating func forgetInjectedEvent() {
        exception.injected = 0
        interrupt.injected = 0
        nmi.injected = 0
    }
}

extension kvm_segment {
    init(_ s: SegmentState) {
        self.init()
        selector = s.selector; base = s.base; limit = s.limit; type = s.type; self.s = s.s ? 1 : 0
        dpl = s.dpl; present = s.present ? 1 : 0; avl = s.avl ? 1 : 0; l = s.l ? 1 : 0; db = s.db ? 1 : 0
        g = s.g ? 1 : 0; unusable = s.unusable ? 1 : 0
    }
}

extension CPUState {
    /// Copies the control registers, EFER, segments and descriptor tables
    /// into `s`, leaving KVM's own fields (APIC base, CR8, pending IRQs) alone.
    func store(into s: inout kvm_sregs) {
        s.cr0 = cr0; s.cr2 = cr2; s.cr3 = cr3; s.cr4 = cr4; s.efer = efer
        s.cs = kvm_segment(cs); s.ds = kvm_segment(ds); s.es = kvm_segment(es); s.fs = kvm_segment(fs)
        s.gs = kvm_segment(gs); s.ss = kvm_segment(ss); s.tr = kvm_segment(tr); s.ldt = kvm_segment(ldtr)
        s.gdt.base = gdtr.base; s.gdt.limit = gdtr.limit
        s.idt.base = idtr.base; s.idt.limit = idtr.limit
    }
}
