import KVM

/// A readable dump of the vCPU state, printed when a run ends abnormally.
/// The state as of the last exit, with what L0 has set since.
enum RegisterDump {
    static func text(of vcpu: any VirtualCPU) -> String {
        let r = vcpu.registers, s = vcpu.specialRegisters
        func row(_ pairs: [(String, UInt64)]) -> String {
            pairs.map { "\($0.0.padding(3))=\(hex($0.1, digits: 16))" }.joined(separator: " ")
        }
        func seg(_ name: String, _ x: Segment) -> String {
            "\(name.padding(3))=\(hex(x.selector, digits: 4)) base=\(hex(x.base, digits: 16)) limit=\(hex(x.limit, digits: 8)) type=\(x.type) dpl=\(x.dpl) p=\(x.present ? 1 : 0) db=\(x.db ? 1 : 0) l=\(x.l ? 1 : 0)"
        }
        return [
            row([("rax", r.rax), ("rbx", r.rbx), ("rcx", r.rcx), ("rdx", r.rdx)]),
            row([("rsi", r.rsi), ("rdi", r.rdi), ("rbp", r.rbp), ("rsp", r.rsp)]),
            row([("r8", r.r8), ("r9", r.r9), ("r10", r.r10), ("r11", r.r11)]),
            row([("r12", r.r12), ("r13", r.r13), ("r14", r.r14), ("r15", r.r15)]),
            row([("rip", r.rip), ("rfl", r.rflags), ("efr", s.efer)]),
            row([("cr0", s.cr0), ("cr2", s.cr2), ("cr3", s.cr3), ("cr4", s.cr4)]),
            seg("cs", s.cs), seg("ss", s.ss), seg("ds", s.ds), seg("tr", s.tr),
            "gdt=\(hex(s.gdt.base, digits: 16))/\(hex(s.gdt.limit, digits: 4)) idt=\(hex(s.idt.base, digits: 16))/\(hex(s.idt.limit, digits: 4))",
        ].joined(separator: "\n")
    }
}

extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}
