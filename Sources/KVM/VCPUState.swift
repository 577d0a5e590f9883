import CKVM

/// The general-purpose registers, RIP and RFLAGS (`struct kvm_regs`), as a
/// Swift value: clients of this module never see the C structure.
public struct Registers: Equatable, Sendable {
    public var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
    public var rsi: UInt64 = 0, rdi: UInt64 = 0, rsp: UInt64 = 0, rbp: UInt64 = 0
    public var r8: UInt64 = 0, r9: UInt64 = 0, r10: UInt64 = 0, r11: UInt64 = 0
    public var r12: UInt64 = 0, r13: UInt64 = 0, r14: UInt64 = 0, r15: UInt64 = 0
    public var rip: UInt64 = 0, rflags: UInt64 = 0x2
    public init() {}

    init(_ r: kvm_regs) {
        rax = r.rax; rbx = r.rbx; rcx = r.rcx; rdx = r.rdx; rsi = r.rsi; rdi = r.rdi; rsp = r.rsp; rbp = r.rbp
        r8 = r.r8; r9 = r.r9; r10 = r.r10; r11 = r.r11; r12 = r.r12; r13 = r.r13; r14 = r.r14; r15 = r.r15
        rip = r.rip; rflags = r.rflags
    }

    var kvm: kvm_regs {
        kvm_regs(rax: rax, rbx: rbx, rcx: rcx, rdx: rdx, rsi: rsi, rdi: rdi, rsp: rsp, rbp: rbp, r8: r8, r9: r9,
                 r10: r10, r11: r11, r12: r12, r13: r13, r14: r14, r15: r15, rip: rip, rflags: rflags)
    }
}

/// A segment register with its hidden part (`struct kvm_segment`).
public struct Segment: Equatable, Sendable {
    public var base: UInt64 = 0
    public var limit: UInt32 = 0
    public var selector: UInt16 = 0
    /// The descriptor type, 4 bits.
    public var type: UInt8 = 0
    public var present = false
    public var dpl: UInt8 = 0
    public var db = false
    /// Code or data (the descriptor's S bit).
    public var s = false
    public var l = false
    public var g = false
    public var avl = false
    public var unusable = false

    @inlinable
    public init(base: UInt64 = 0, limit: UInt32 = 0, selector: UInt16 = 0, type: UInt8 = 0, present: Bool = false,
                dpl: UInt8 = 0, db: Bool = false, s: Bool = false, l: Bool = false, g: Bool = false,
                avl: Bool = false, unusable: Bool = false) {
        self.base = base; self.limit = limit; self.selector = selector; self.type = type; self.present = present
        self.dpl = dpl; self.db = db; self.s = s; self.l = l; self.g = g; self.avl = avl; self.unusable = unusable
    }

    init(_ k: kvm_segment) {
        self.init(base: k.base, limit: k.limit, selector: k.selector, type: k.type, present: k.present != 0,
                  dpl: k.dpl, db: k.db != 0, s: k.s != 0, l: k.l != 0, g: k.g != 0, avl: k.avl != 0,
                  unusable: k.unusable != 0)
    }

    var kvm: kvm_segment {
        @inline(__always) get {
            var k = kvm_segment()
            k.base = base; k.limit = limit; k.selector = selector; k.type = type; k.present = present ? 1 : 0
            k.dpl = dpl; k.db = db ? 1 : 0; k.s = s ? 1 : 0; k.l = l ? 1 : 0; k.g = g ? 1 : 0; k.avl = avl ? 1 : 0
            k.unusable = unusable ? 1 : 0
            return k
        }
    }
}

/// GDTR or IDTR.
public struct DescriptorTable: Equatable, Sendable {
    public var base: UInt64
    public var limit: UInt16
    public init(base: UInt64 = 0, limit: UInt16 = 0) { self.base = base; self.limit = limit }
}

/// Control registers, EFER, segments and descriptor tables (`struct
/// kvm_sregs`). KVM's pending-interrupt bitmap is not modelled: writing
/// these back leaves it as KVM has it.
public struct SpecialRegisters: Equatable, Sendable {
    public var cs = Segment(), ds = Segment(), es = Segment(), fs = Segment()
    public var gs = Segment(), ss = Segment(), tr = Segment(), ldt = Segment()
    public var gdt = DescriptorTable(), idt = DescriptorTable()
    public var cr0: UInt64 = 0, cr2: UInt64 = 0, cr3: UInt64 = 0, cr4: UInt64 = 0, cr8: UInt64 = 0
    public var efer: UInt64 = 0
    public var apicBase: UInt64 = 0
    public init() {}

    init(_ k: kvm_sregs) {
        cs = Segment(k.cs); ds = Segment(k.ds); es = Segment(k.es); fs = Segment(k.fs)
        gs = Segment(k.gs); ss = Segment(k.ss); tr = Segment(k.tr); ldt = Segment(k.ldt)
        gdt = DescriptorTable(base: k.gdt.base, limit: k.gdt.limit)
        idt = DescriptorTable(base: k.idt.base, limit: k.idt.limit)
        cr0 = k.cr0; cr2 = k.cr2; cr3 = k.cr3; cr4 = k.cr4; cr8 = k.cr8; efer = k.efer; apicBase = k.apic_base
    }

    /// Writes these registers into `k`, with an empty interrupt bitmap: KVM
    /// queues the interrupt a set bit names (Documentation/virt/kvm/api.rst,
    /// KVM_SET_SREGS), so the bitmap an exit reported would inject its
    /// interrupt a second time (measured 2026-12-06: L2 took an interrupt
    /// again at every RDTSC L0 emulated). Events go through `VCPUEvents`.
    func store(into k: inout kvm_sregs) {
        k.interrupt_bitmap = (0, 0, 0, 0)
        k.cs = cs.kvm; k.ds = ds.kvm; k.es = es.kvm; k.fs = fs.kvm; k.gs = gs.kvm; k.ss = ss.kvm; k.tr = tr.kvm
        k.ldt = ldt.kvm
        k.gdt.base = gdt.base; k.gdt.limit = gdt.limit; k.idt.base = idt.base; k.idt.limit = idt.limit
        k.cr0 = cr0; k.cr2 = cr2; k.cr3 = cr3; k.cr4 = cr4; k.cr8 = cr8; k.efer = efer; k.apic_base = apicBase
    }
}

/// The events a vCPU holds between instructions (`struct kvm_vcpu_events`):
/// an exception or interrupt being injected, NMI state and the interrupt
/// shadow. SMM and the exception payload are not modelled and are kept as
/// KVM has them when written back.
public struct VCPUEvents: Equatable, Sendable {
    public struct Exception: Equatable, Sendable {
        public var injected = false
        public var vector: UInt8 = 0
        public var errorCode: UInt32?
        public init(injected: Bool = false, vector: UInt8 = 0, errorCode: UInt32? = nil) {
            self.injected = injected; self.vector = vector; self.errorCode = errorCode
        }
    }

    public struct Interrupt: Equatable, Sendable {
        public var injected = false
        public var vector: UInt8 = 0
        /// A software interrupt (INT n), which KVM delivers with an instruction length.
        public var soft = false
        public init(injected: Bool = false, vector: UInt8 = 0, soft: Bool = false) {
            self.injected = injected; self.vector = vector; self.soft = soft
        }
    }

    /// Blocking by STI or by MOV SS (SDM Vol. 3C 25.4.2).
    public struct Shadow: OptionSet, Equatable, Sendable {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let movSS = Shadow(rawValue: 1)     // KVM_X86_SHADOW_INT_MOV_SS
        public static let sti = Shadow(rawValue: 2)       // KVM_X86_SHADOW_INT_STI
    }

    public var exception = Exception()
    public var interrupt = Interrupt()
    public var nmiInjected = false
    public var shadow: Shadow = []
    public init() {}

    /// The event being injected, dropped: the next run delivers none.
    public mutating func forgetInjectedEvent() {
        exception.injected = false
        interrupt.injected = false
        nmiInjected = false
    }

    init(_ k: kvm_vcpu_events) {
        exception = Exception(injected: k.exception.injected != 0, vector: k.exception.nr,
                              errorCode: k.exception.has_error_code != 0 ? k.exception.error_code : nil)
        interrupt = Interrupt(injected: k.interrupt.injected != 0, vector: k.interrupt.nr, soft: k.interrupt.soft != 0)
        nmiInjected = k.nmi.injected != 0
        shadow = Shadow(rawValue: k.interrupt.shadow & 3)
    }

    /// Writes these events over `k`; the shadow is marked valid so that
    /// KVM takes it (KVM_VCPUEVENT_VALID_SHADOW).
    func store(into k: inout kvm_vcpu_events) {
        k.exception.injected = exception.injected ? 1 : 0
        k.exception.nr = exception.vector
        k.exception.has_error_code = exception.errorCode == nil ? 0 : 1
        k.exception.error_code = exception.errorCode ?? 0
        k.interrupt.injected = interrupt.injected ? 1 : 0
        k.interrupt.nr = interrupt.vector
        k.interrupt.soft = interrupt.soft ? 1 : 0
        k.interrupt.shadow = shadow.rawValue
        k.nmi.injected = nmiInjected ? 1 : 0
        k.flags |= UInt32(KVM_VCPUEVENT_VALID_SHADOW)
    }
}

/// The debug status and control registers (SDM Vol. 3B 18.2.3, 18.2.4), as
/// the guest reads them. DR0-DR3 are not needed by the monitor.
public struct DebugRegisters: Equatable, Sendable {
    public var dr6: UInt64
    public var dr7: UInt64
    /// The values after reset (SDM Vol. 3A Table 9-1).
    public static let reset = DebugRegisters(dr6: 0xffff_0ff0, dr7: 0x400)
    public init(dr6: UInt64, dr7: UInt64) { self.dr6 = dr6; self.dr7 = dr7 }
}
