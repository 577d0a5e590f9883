import XCTest
@testable import NestedVMX
import VMXArch

/// Instruction bytes used by the semantics tests (SDM Vol. 3C 31.3 opcode
/// tables; ModRM per SDM Vol. 2 Table 2-2). Memory forms use [rax] (or [rbx]
/// for the second operand of VMREAD/VMWRITE/INVEPT/INVVPID).
enum Bytes {
    static let vmxon: [UInt8] = [0xF3, 0x0F, 0xC7, 0x30]        // VMXON [rax]
    static let vmptrld: [UInt8] = [0x0F, 0xC7, 0x30]            // VMPTRLD [rax]
    static let vmclear: [UInt8] = [0x66, 0x0F, 0xC7, 0x30]      // VMCLEAR [rax]
    static let vmptrst: [UInt8] = [0x0F, 0xC7, 0x38]            // VMPTRST [rax]
    /// VMREAD rbx, rax: 0F 78 /r, reg = field source (rax), r/m = destination (rbx).
    static let vmreadReg: [UInt8] = [0x0F, 0x78, 0xC3]
    /// VMREAD [rbx], rax.
    static let vmreadMem: [UInt8] = [0x0F, 0x78, 0x03]
    /// VMWRITE rax, rbx: 0F 79 /r, reg = field (rax), r/m = value (rbx).
    static let vmwriteReg: [UInt8] = [0x0F, 0x79, 0xC3]
    /// VMWRITE rax, [rbx].
    static let vmwriteMem: [UInt8] = [0x0F, 0x79, 0x03]
    static let vmlaunch: [UInt8] = [0x0F, 0x01, 0xC2]
    static let vmresume: [UInt8] = [0x0F, 0x01, 0xC3]
    static let vmxoff: [UInt8] = [0x0F, 0x01, 0xC4]
    static let vmcall: [UInt8] = [0x0F, 0x01, 0xC1]
    static let vmfunc: [UInt8] = [0x0F, 0x01, 0xD4]
    static let invept: [UInt8] = [0x66, 0x0F, 0x38, 0x80, 0x03]  // INVEPT rax, [rbx]
    static let invvpid: [UInt8] = [0x66, 0x0F, 0x38, 0x81, 0x03] // INVVPID rax, [rbx]
}

/// Guest-physical layout of the test machine (identity-mapped, 2 MiB pages).
enum TestLayout {
    static let ramSize = 8 << 20
    static let pml4: UInt64 = 0x1000
    static let pdpt: UInt64 = 0x2000
    static let pd: UInt64 = 0x3000
    /// PAE PDPT for 32-bit protected mode (SDM Vol. 3A 4.4.1): entry 0 -> `pd`.
    static let paePDPT: UInt64 = 0x4000
    static let vmxonRegion: UInt64 = 0x10000
    static let vmcsA: UInt64 = 0x11000
    static let vmcsB: UInt64 = 0x12000
    static let vmcsC: UInt64 = 0x13000
    /// Scratch for memory operands (the m64 pointer, descriptors, VMREAD/VMWRITE data).
    static let operand: UInt64 = 0x20000
    static let data: UInt64 = 0x20100
    /// Linear 8 MiB...10 MiB: PDE 4 is not present (#PF).
    static let unmapped: UInt64 = 0x80_0000
    /// Linear 10 MiB...12 MiB maps guest-physical 1 GiB, which is not RAM.
    static let notRAMLinear: UInt64 = 0xA0_0000
    static let notRAMPhysical: UInt64 = 0x4000_0000
    static let rip: UInt64 = 0x40_1000
    static let tablesEnd = 0x30000

    static func makeMemory() -> ArrayMemory {
        let m = ArrayMemory(size: ramSize)
        _ = m.store(pdpt | 7, at: pml4)                // P | RW | US
        _ = m.store(pd | 7, at: pdpt)
        for i in 0..<4 { _ = m.store(UInt64(i) << 21 | 0x87, at: pd + 8 * UInt64(i)) }   // 2 MiB pages
        _ = m.store(notRAMPhysical | 0x87, at: pd + 8 * 5)
        _ = m.store(pd | 1, at: paePDPT)
        for region in [vmxonRegion, vmcsA, vmcsB, vmcsC] {
            _ = m.store(VMXCapabilities.revisionID, at: region)
        }
        return m
    }
}

/// RFLAGS bits that VMsucceed/VMfail define (SDM Vol. 3C 31.2).
enum Flag {
    static let cf: UInt64 = 1 << 0
    static let pf: UInt64 = 1 << 2
    static let af: UInt64 = 1 << 4
    static let zf: UInt64 = 1 << 6
    static let sf: UInt64 = 1 << 7
    static let of: UInt64 = 1 << 11
    static let arithmetic: UInt64 = cf | pf | af | zf | sf | of
    static let vm: UInt64 = 1 << 17
}

enum CPUMode: CaseIterable { case long64, protected32, compatibility, real, virtual8086 }

extension CPUState {
    /// A CPU in `mode` at CPL 0 with flat segments. 64-bit: CR0 = PE|ET|NE|PG,
    /// CR4 = PAE, EFER = LME|LMA, 4-level identity tables. 32-bit: the same CR0
    /// and CR4 with PAE paging over the same page directory.
    static func make(_ mode: CPUMode = .long64) -> CPUState {
        var s = CPUState()
        s.cr0 = 0x8000_0031
        s.cr4 = 0x20
        s.rip = TestLayout.rip
        s.rflags = 0x2
        let data = SegmentState(selector: 0x10, limit: 0xFFFF_FFFF, type: 0x3, db: true, g: true)
        for seg in [SegmentRegister.ds, .es, .ss, .fs, .gs] { s[seg] = data }
        switch mode {
        case .long64:
            s.efer = 0x500
            s.cr3 = TestLayout.pml4
            s.cs = SegmentState(selector: 8, limit: 0xFFFF_FFFF, type: 0xB, l: true, g: true)
        case .compatibility:
            s.efer = 0x500
            s.cr3 = TestLayout.pml4
            s.cs = SegmentState(selector: 8, limit: 0xFFFF_FFFF, type: 0xB, db: true, g: true)
        case .protected32:
            s.cr3 = TestLayout.paePDPT
            s.cs = SegmentState(selector: 8, limit: 0xFFFF_FFFF, type: 0xB, db: true, g: true)
        case .virtual8086:
            s.cr3 = TestLayout.paePDPT
            s.rflags |= Flag.vm
            s.cs = SegmentState(selector: 0, limit: 0xFFFF, type: 0x3)
            for seg in [SegmentRegister.ds, .es, .ss, .fs, .gs] { s[seg] = SegmentState(limit: 0xFFFF, type: 0x3, dpl: 3) }
            s.cs.dpl = 3
            s.rip = 0x100
        case .real:
            s.cr0 = 0x10
            s.cr4 = 0
            s.cs = SegmentState(selector: 0, limit: 0xFFFF, type: 0xB)
            for seg in [SegmentRegister.ds, .es, .ss, .fs, .gs] { s[seg] = SegmentState(limit: 0xFFFF, type: 0x3) }
            s.rip = 0x100
        }
        return s
    }

    mutating func setCPL3() { cs.dpl = 3; ss.dpl = 3 }
}

/// One vCPU, its VMX state and its RAM, with helpers that assemble, decode
/// and execute single VMX instructions.
struct VMXMachine {
    let memory: ArrayMemory
    var cpu: CPUState
    var vmx: VMXState

    init(_ mode: CPUMode = .long64, memory: ArrayMemory = TestLayout.makeMemory(), lockedByFirmware: Bool = true) {
        self.memory = memory
        cpu = .make(mode)
        vmx = VMXState(capabilities: .terrapin(physicalAddressBits: 46), lockedByFirmware: lockedByFirmware)
        vmx.vmxe = true
    }

    func decode(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> DecodedInstruction? {
        switch VMXDecoder.decode(bytes, state: cpu) {
        case let .success(d): return d
        case let .failure(e):
            XCTFail("decode of \(bytes) failed: \(e)", file: file, line: line)
            return nil
        }
    }

    /// Decodes `bytes` at the current state and executes them.
    @discardableResult
    mutating func run(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> VMXExecution {
        guard let insn = decode(bytes, file: file, line: line) else {
            return VMXExecution(.vmcall, .fault(.invalidOpcode))
        }
        return VMXSemantics.execute(insn, cpu: &cpu, vmx: &vmx, memory: memory)
    }

    // MARK: Instructions with their operands

    /// Runs a memory-operand instruction on [rax] with `pointer` stored there.
    @discardableResult
    mutating func pointerOp(_ bytes: [UInt8], _ pointer: UInt64, file: StaticString = #filePath, line: UInt = #line) -> VMXExecution {
        XCTAssertTrue(memory.store(pointer, at: TestLayout.operand), file: file, line: line)
        cpu.gprs[.rax] = TestLayout.operand
        return run(bytes, file: file, line: line)
    }

    @discardableResult
    mutating func vmxon(_ region: UInt64 = TestLayout.vmxonRegion, file: StaticString = #filePath, line: UInt = #line) -> VMXResult {
        pointerOp(Bytes.vmxon, region, file: file, line: line).result
    }

    @discardableResult
    mutating func vmptrld(_ region: UInt64, file: StaticString = #filePath, line: UInt = #line) -> VMXResult {
        pointerOp(Bytes.vmptrld, region, file: file, line: line).result
    }

    @discardableResult
    mutating func vmclear(_ region: UInt64, file: StaticString = #filePath, line: UInt = #line) -> VMXResult {
        pointerOp(Bytes.vmclear, region, file: file, line: line).result
    }

    /// VMREAD rbx, rax with rax = `field`; the value, or nil unless VMsucceed.
    mutating func vmread(_ field: UInt64, file: StaticString = #filePath, line: UInt = #line) -> UInt64? {
        cpu.gprs[.rax] = field
        cpu.gprs[.rbx] = 0x5A5A_5A5A_5A5A_5A5A
        let r = run(Bytes.vmreadReg, file: file, line: line).result
        return r == .succeed ? cpu.gprs[.rbx] : nil
    }

    mutating func vmread(_ field: VMCSField, file: StaticString = #filePath, line: UInt = #line) -> UInt64? {
        vmread(UInt64(field.rawValue), file: file, line: line)
    }

    /// VMWRITE rax, rbx with rax = `field`, rbx = `value`.
    @discardableResult
    mutating func vmwrite(_ field: UInt64, _ value: UInt64, file: StaticString = #filePath, line: UInt = #line) -> VMXResult {
        cpu.gprs[.rax] = field
        cpu.gprs[.rbx] = value
        return run(Bytes.vmwriteReg, file: file, line: line).result
    }

    @discardableResult
    mutating func vmwrite(_ field: VMCSField, _ value: UInt64, file: StaticString = #filePath, line: UInt = #line) -> VMXResult {
        vmwrite(UInt64(field.rawValue), value, file: file, line: line)
    }

    /// VMXON on the standard region, asserting VMsucceed.
    mutating func enterVMX(file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(vmxon(file: file, line: line), .succeed, "VMXON", file: file, line: line)
        XCTAssertTrue(vmx.inVMXOperation, file: file, line: line)
    }

    /// VMXON then VMPTRLD `region`, both asserted to succeed.
    mutating func enterWithVMCS(_ region: UInt64 = TestLayout.vmcsA, file: StaticString = #filePath, line: UInt = #line) {
        enterVMX(file: file, line: line)
        XCTAssertEqual(vmptrld(region, file: file, line: line), .succeed, "VMPTRLD", file: file, line: line)
        XCTAssertEqual(vmx.current?.address, region, file: file, line: line)
    }

    /// The VM-instruction error field of the current VMCS (SDM 31.4), read from the cache.
    var instructionError: UInt64? { vmx.current?.read(.vmInstructionError) }

    /// The stored value of `field` in the VMCS12 region at `region` (our layout).
    func stored(_ field: VMCSField, in region: UInt64) -> UInt64? {
        guard let slot = VMCS12Layout.slot(of: field) else { return nil }
        return memory.load(UInt64.self, at: region + VMCS12Layout.offset(ofSlot: slot))
    }

    func launchWord(_ region: UInt64) -> UInt32? { memory.load(UInt32.self, at: region + VMCS12Layout.launchStateOffset) }
}

/// Asserts a retired VMX instruction (SDM 31.2): the exact result, RIP past
/// the instruction, CF/ZF per the outcome, PF/AF/SF/OF clear, other RFLAGS
/// bits kept, and for VMfailValid the error number in the current VMCS.
func assertRetired(_ execution: VMXExecution, _ expected: VMXResult, before: CPUState, machine m: VMXMachine,
                   length: Int, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(execution.result, expected, file: file, line: line)
    XCTAssertEqual(m.cpu.rip, before.rip &+ UInt64(length), "RIP", file: file, line: line)
    let flags = m.cpu.rflags
    XCTAssertEqual(flags & ~Flag.arithmetic, before.rflags & ~Flag.arithmetic, "non-arithmetic RFLAGS", file: file, line: line)
    XCTAssertEqual(flags & (Flag.pf | Flag.af | Flag.sf | Flag.of), 0, "PF/AF/SF/OF", file: file, line: line)
    switch expected {
    case .succeed:
        XCTAssertEqual(flags & (Flag.cf | Flag.zf), 0, "VMsucceed: CF=ZF=0", file: file, line: line)
    case .failInvalid:
        XCTAssertEqual(flags & (Flag.cf | Flag.zf), Flag.cf, "VMfailInvalid: CF=1 ZF=0", file: file, line: line)
    case let .failValid(n):
        XCTAssertEqual(flags & (Flag.cf | Flag.zf), Flag.zf, "VMfailValid: ZF=1 CF=0", file: file, line: line)
        XCTAssertEqual(m.instructionError, UInt64(n), "VM-instruction error field", file: file, line: line)
    default:
        XCTFail("not a retiring outcome: \(expected)", file: file, line: line)
    }
}

/// Runs `bytes` and asserts the retired outcome.
func expectRetire(_ m: inout VMXMachine, _ bytes: [UInt8], _ expected: VMXResult,
                  file: StaticString = #filePath, line: UInt = #line) {
    let before = m.cpu
    let e = m.run(bytes, file: file, line: line)
    assertRetired(e, expected, before: before, machine: m, length: bytes.count, file: file, line: line)
}

/// Runs `bytes` and asserts it faults with `exception`, leaving the CPU and
/// VMX state exactly as they were (SDM: faults are raised before any change).
func expectFault(_ m: inout VMXMachine, _ bytes: [UInt8], _ exception: X86Exception,
                 file: StaticString = #filePath, line: UInt = #line) {
    let cpu = m.cpu, vmx = m.vmx
    let e = m.run(bytes, file: file, line: line)
    XCTAssertEqual(e.result, .fault(exception), file: file, line: line)
    XCTAssertEqual(m.cpu, cpu, "CPU state changed by a fault", file: file, line: line)
    XCTAssertEqual(m.vmx, vmx, "VMX state changed by a fault", file: file, line: line)
}
