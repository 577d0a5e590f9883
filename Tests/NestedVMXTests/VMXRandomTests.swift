import XCTest
@testable import NestedVMX
import VMXArch

/// xorshift64 (Marsaglia 2003): a fixed seed gives a reproducible run.
struct XorShift64 {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// True with probability 1/n.
    mutating func oneIn(_ n: Int) -> Bool { below(n) == 0 }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

/// A seeded random run of VMX instructions against the semantics, checking
/// the invariants of SDM Vol. 3C 31.2 (VMsucceed/VMfail conventions), 31.4
/// (error numbers) and "a fault changes nothing".
final class VMXRandomTests: XCTestCase {
    typealias L = TestLayout

    /// The 13 instructions: their opcode bytes (mandatory prefix included) and,
    /// for the ModRM forms, the reg field the opcode needs (nil: any register).
    struct Base { var insn: VMXInstruction; var bytes: [UInt8]; var modrm: Bool; var reg: UInt8? }
    static let bases: [Base] = [
        Base(insn: .vmxon, bytes: [0xF3, 0x0F, 0xC7], modrm: true, reg: 6),
        Base(insn: .vmclear, bytes: [0x66, 0x0F, 0xC7], modrm: true, reg: 6),
        Base(insn: .vmptrld, bytes: [0x0F, 0xC7], modrm: true, reg: 6),
        Base(insn: .vmptrst, bytes: [0x0F, 0xC7], modrm: true, reg: 7),
        Base(insn: .vmread, bytes: [0x0F, 0x78], modrm: true, reg: nil),
        Base(insn: .vmwrite, bytes: [0x0F, 0x79], modrm: true, reg: nil),
        Base(insn: .vmlaunch, bytes: [0x0F, 0x01, 0xC2], modrm: false, reg: nil),
        Base(insn: .vmresume, bytes: [0x0F, 0x01, 0xC3], modrm: false, reg: nil),
        Base(insn: .vmxoff, bytes: [0x0F, 0x01, 0xC4], modrm: false, reg: nil),
        Base(insn: .vmcall, bytes: [0x0F, 0x01, 0xC1], modrm: false, reg: nil),
        Base(insn: .vmfunc, bytes: [0x0F, 0x01, 0xD4], modrm: false, reg: nil),
        Base(insn: .invept, bytes: [0x66, 0x0F, 0x38, 0x80], modrm: true, reg: nil),
        Base(insn: .invvpid, bytes: [0x66, 0x0F, 0x38, 0x81], modrm: true, reg: nil),
    ]
    static let prefixes: [UInt8] = [0x66, 0x67, 0xF2, 0xF3, 0xF0, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65]

    /// The VMfailValid numbers each instruction may report (SDM 31.3 pseudo-code, Table 31-1).
    static func allowedErrors(_ insn: VMXInstruction) -> Set<UInt32> {
        switch insn {
        case .vmxon: [15]
        case .vmclear: [2, 3]
        case .vmptrld: [9, 10, 11]
        case .vmread: [12]
        case .vmwrite: [12, 13]
        case .vmlaunch: [4, 7, 8, 26]
        case .vmresume: [5, 7, 8, 26]
        case .vmcall: [1]
        case .invept, .invvpid: [28]
        case .vmxoff, .vmptrst, .vmfunc: []
        }
    }

    /// VMCS pointers stored at the operand slots (L.operand + 8*k).
    static let pointers: [UInt64] = [
        L.vmxonRegion, L.vmcsA, L.vmcsB, L.vmcsC, L.vmcsA + 8, L.vmcsB | 1 << 46, L.notRAMPhysical, ~0,
        L.pd, 0x14000, 0x15000, 0, L.vmcsA, L.vmcsB, L.vmcsC, 1 << 45,
    ]
    static let descriptors: [(UInt64, UInt64)] = [
        (0x5000 | 3 << 3 | 6, 0), (0x5000 | 3 << 3, 0), (0x5000 | 3 << 3 | 1, 0), (1, 0xffff_8000_0000_0000),
        (0, 0), (1 << 16 | 1, 0), (5, 0x0000_8000_0000_0000), (0x5000 | 1 << 6 | 3 << 3 | 6, 7),
    ]
    static let descriptorBase: UInt64 = 0x21000

    static func prepareMemory() -> ArrayMemory {
        let m = TestLayout.makeMemory()
        _ = m.store(VMXCapabilities.revisionID ^ 2, at: 0x14000)
        _ = m.store(VMXCapabilities.revisionID | 1 << 31, at: 0x15000)
        _ = m.store(UInt32(1), at: L.vmcsC + VMCS12Layout.launchStateOffset)
        for (k, p) in pointers.enumerated() { _ = m.store(p, at: L.operand + 8 * UInt64(k)) }
        for (k, d) in descriptors.enumerated() {
            _ = m.store(d.0, at: descriptorBase + 16 * UInt64(k))
            _ = m.store(d.1, at: descriptorBase + 16 * UInt64(k) + 8)
        }
        return m
    }

    func randomRegister(_ r: inout XorShift64) -> UInt64 {
        switch r.below(14) {
        case 0: return L.operand + 8 * UInt64(r.below(Self.pointers.count))
        case 1: return Self.descriptorBase + 16 * UInt64(r.below(Self.descriptors.count))
        case 2, 3:
            let f = r.pick(VMCSField.allFields)
            return UInt64((r.oneIn(4) && f.width == .bits64) ? f.rawValue | 1 : f.rawValue)
        case 4: return r.next()
        case 5: return r.next() & 0xffff_ffff
        case 6: return UInt64(r.below(10))
        case 7: return r.pick([L.vmxonRegion, L.vmcsA, L.vmcsB, L.vmcsC])
        case 8: return L.unmapped + r.next() % 0x20_0000
        case 9: return L.notRAMLinear + r.next() % 0x20_0000
        case 10: return r.next() & 0x7f_f000
        case 11: return r.next() & 0x7f_ffff
        case 12: return 0x0000_8000_0000_0000 | r.next() & 0xffff_ffff
        default: return L.data + UInt64(r.below(0x100))
        }
    }

    func randomBytes(_ r: inout XorShift64) -> [UInt8] {
        if r.oneIn(20) { return (0..<(1 + r.below(16))).map { _ in r.byte() } }
        if r.oneIn(20) { return [0x0F] + (0..<r.below(15)).map { _ in r.byte() } }
        var bytes: [UInt8] = []
        if r.oneIn(4) { for _ in 0..<(1 + r.below(3)) { bytes.append(r.pick(Self.prefixes)) } }
        let base = r.pick(Self.bases)
        // Legacy prefixes go before the mandatory one only if they are not F2/F3/66 (those would replace it).
        bytes += base.bytes.prefix(while: { $0 != 0x0F })
        if r.oneIn(4) { bytes.append(0x40 | r.byte() & 0xF) }          // REX (64-bit mode only)
        bytes += base.bytes.drop(while: { $0 != 0x0F })
        if base.modrm {
            var modrm = r.byte()
            if let reg = base.reg, !r.oneIn(8) { modrm = modrm & ~0x38 | reg << 3 }
            if base.insn == .vmread || base.insn == .vmwrite {
                if r.oneIn(2) { modrm |= 0xC0 }
            } else if !r.oneIn(8), modrm >> 6 == 3 {
                modrm &= 0x3F
            }
            bytes.append(modrm)
            // SIB and displacement: mostly small.
            for _ in 0..<r.below(7) { bytes.append(r.oneIn(2) ? 0 : (r.oneIn(2) ? r.byte() & 0x1F : r.byte())) }
        } else if r.oneIn(4) {
            bytes.append(r.byte())
        }
        return bytes
    }

    func randomizeState(_ r: inout XorShift64, cpu: inout CPUState, vmx: inout VMXState, memory: ArrayMemory,
                        templates: [CPUMode: CPUState]) {
        if r.oneIn(6) {
            let mode: CPUMode = r.pick([.long64, .long64, .long64, .long64, .long64, .long64, .protected32, .protected32,
                                        .compatibility, .real, .virtual8086])
            cpu = templates[mode]!
            if mode != .real && mode != .virtual8086 && r.oneIn(6) { cpu.setCPL3() }
            cpu.blockingByMovSS = r.oneIn(8)
            vmx.vmxe = !r.oneIn(40)
            switch r.below(10) {
            case 0: vmx.featureControl = []
            case 1: vmx.featureControl = .lock
            default: vmx.featureControl = [.lock, .vmxOutsideSMX]
            }
        }
        // VMX transitions, biased towards VMX root operation with a current VMCS.
        if r.oneIn(8) || (!vmx.inVMXOperation && r.oneIn(3)) {
            switch r.below(8) {
            case 0:
                vmx.inVMXOperation = false; vmx.vmxonPointer = VMXState.invalidPointer; vmx.current = nil
            case 1, 2, 3:
                vmx.inVMXOperation = true; vmx.vmxonPointer = L.vmxonRegion
                if r.oneIn(2) { vmx.current = VMCS12(loadingFrom: r.pick([L.vmcsA, L.vmcsB, L.vmcsC]), memory: memory) }
            case 4, 5, 6:
                if vmx.inVMXOperation {
                    vmx.current = VMCS12(loadingFrom: r.pick([L.vmcsA, L.vmcsB, L.vmcsC]), memory: memory)
                }
            default:
                vmx.current = nil
            }
        }
        for i in 0..<16 { cpu.gprs[i] = randomRegister(&r) }
        cpu.rflags = 0x2 | (cpu.rflags & Flag.vm) | (r.next() & (Flag.arithmetic | 1 << 9 | 1 << 10))
        if cpu.mode64 {
            cpu.rip = r.oneIn(4) ? 0xffff_ffff_ffff_fff0 &+ UInt64(r.below(16)) : L.rip + UInt64(r.below(0x1000))
        } else if cpu.cs.db {
            cpu.rip = r.oneIn(4) ? 0xffff_fff0 + UInt64(r.below(16)) : UInt64(r.below(0x10000))
        } else {
            cpu.rip = UInt64(r.below(0x10000))
        }
    }

    func testRandomVMXInstructions() {
        let iterations = 200_000
        var r = XorShift64(seed: 0x5EED_7E44_A91C_0003)
        let memory = Self.prepareMemory()
        let pristine = Array(memory.bytes[0..<L.tablesEnd])
        var templates: [CPUMode: CPUState] = [:]
        for mode in CPUMode.allCases { templates[mode] = .make(mode) }
        var cpu = templates[.long64]!
        var vmx = VMXState(capabilities: .terrapin(physicalAddressBits: 46))
        vmx.vmxe = true
        let capabilities = vmx.capabilities

        var executed: [String: Int] = [:]
        var outcomes: [String: Int] = [:]
        var decodeFailures = 0
        var failures = 0

        for iteration in 0..<iterations {
            if iteration % 32 == 0 {
                memory.bytes.withUnsafeMutableBytes { dst in
                    pristine.withUnsafeBytes { src in dst.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: src.count) }
                }
            }
            randomizeState(&r, cpu: &cpu, vmx: &vmx, memory: memory, templates: templates)
            let bytes = randomBytes(&r)
            let before = cpu, vmxBefore = vmx
            let decoded: DecodedInstruction
            switch VMXDecoder.decode(bytes, state: cpu) {
            case let .failure(e):
                decodeFailures += 1
                if e.vector != 6 && e.vector != 13 { XCTFail("decode \(bytes): \(e)"); failures += 1 }
                continue
            case let .success(d): decoded = d
            }
            let insn = decoded.instruction
            if !(1...15).contains(decoded.length) || decoded.length > bytes.count {
                XCTFail("length \(decoded.length) of \(bytes)"); failures += 1
            }
            let execution = VMXSemantics.execute(decoded, cpu: &cpu, vmx: &vmx, memory: memory)
            executed["\(insn)", default: 0] += 1
            var ok = execution.instruction == insn

            switch execution.result {
            case let .fault(e):
                outcomes["fault \(e.vector)", default: 0] += 1
                ok = ok && [6, 12, 13, 14].contains(e.vector) && cpu == before && vmx == vmxBefore
                if e.vector == 12 || e.vector == 14 { ok = ok && decoded.memoryOperand != nil }
                if e.vector == 14 { ok = ok && e.errorCode != nil && e.faultAddress != nil }
                if e.vector == 12 || e.vector == 13 { ok = ok && e.errorCode == 0 }
            case let .entryFailed(failure):
                // A guest-state or MSR-load failure of a VMLAUNCH/VMRESUME: nothing changed yet.
                outcomes["entryFailed", default: 0] += 1
                ok = ok && cpu == before && vmx == vmxBefore && (insn == .vmlaunch || insn == .vmresume)
                    && failure.exitReason != nil
            case let .vmEntry(launch):
                outcomes["vmEntry", default: 0] += 1
                ok = ok && cpu == before && vmx == vmxBefore && vmx.current != nil
                    && (launch ? insn == .vmlaunch : insn == .vmresume)
                    && vmx.current?.launched == !launch && !cpu.blockingByMovSS
            case .succeed, .failInvalid, .failValid:
                outcomes[execution.result == .succeed ? "succeed" : (execution.result == .failInvalid ? "failInvalid" : "failValid"), default: 0] += 1
                let mask: UInt64 = before.mode64 ? ~0 : (before.cs.db ? 0xffff_ffff : 0xffff)
                ok = ok && cpu.rip == (before.rip &+ UInt64(decoded.length)) & mask
                ok = ok && cpu.rflags & ~Flag.arithmetic == before.rflags & ~Flag.arithmetic
                ok = ok && cpu.rflags & (Flag.pf | Flag.af | Flag.sf | Flag.of) == 0
                switch execution.result {
                case .succeed:
                    ok = ok && cpu.rflags & (Flag.cf | Flag.zf) == 0
                case .failInvalid:
                    ok = ok && cpu.rflags & (Flag.cf | Flag.zf) == Flag.cf && vmx.current == nil
                case let .failValid(n):
                    ok = ok && cpu.rflags & (Flag.cf | Flag.zf) == Flag.zf
                    ok = ok && (1...28).contains(n) && VMInstructionError(rawValue: n) != nil
                    ok = ok && Self.allowedErrors(insn).contains(n)
                    ok = ok && vmx.current?.read(.vmInstructionError) == UInt64(n)
                default: break
                }
                // Nothing else in the CPU changes, except a VMREAD register destination.
                var normalized = cpu
                normalized.rip = before.rip
                normalized.rflags = before.rflags
                if insn == .vmread, case let .register(dst)? = decoded.rm, execution.result == .succeed {
                    normalized.gprs[dst] = before.gprs[dst]
                }
                ok = ok && normalized == before
                if execution.result == .succeed {
                    switch insn {
                    case .vmxon: ok = ok && vmx.inVMXOperation && !vmxBefore.inVMXOperation && vmx.current == nil
                    case .vmxoff: ok = ok && !vmx.inVMXOperation
                    case .vmptrld: ok = ok && vmx.current != nil
                    case .vmfunc: ok = false
                    default: break
                    }
                }
            }
            // State invariants.
            ok = ok && (vmx.current == nil) == (vmx.currentPointer == VMXState.invalidPointer)
            ok = ok && (vmx.inVMXOperation || (vmx.current == nil && vmx.vmxonPointer == VMXState.invalidPointer))
            if let c = vmx.current { ok = ok && c.address & 0xfff == 0 && c.address < UInt64(L.ramSize) }
            ok = ok && vmx.capabilities == capabilities && vmx.vmxe == vmxBefore.vmxe
                && vmx.featureControl == vmxBefore.featureControl

            if !ok {
                failures += 1
                XCTFail("iteration \(iteration): \(bytes.map { String($0, radix: 16) }) \(insn) -> \(execution.result.name)")
                if failures > 20 { break }
            }
        }
        print("random VMX run: \(iterations) iterations, \(decodeFailures) decode failures; executed \(executed.sorted { $0.key < $1.key }); outcomes \(outcomes.sorted { $0.key < $1.key })")
        // The run must exercise every instruction and every kind of outcome.
        for base in Self.bases { XCTAssertGreaterThan(executed["\(base.insn)", default: 0], 500, "\(base.insn)") }
        // Random VMCS contents rarely pass every entry check, so "vmEntry" is
        // not required here; EntryCheckTests cover entries that pass.
        for kind in ["succeed", "failInvalid", "failValid", "fault 6", "fault 13", "fault 14"] {
            XCTAssertGreaterThan(outcomes[kind, default: 0], 100, kind)
        }
        XCTAssertLessThan(decodeFailures, iterations / 2)
    }
}
