@testable import NestedVMX
import XCTest

/// INT n, INT3 and INT1 through the IDT (SDM Vol. 3A 6.12, 6.14), as L0
/// carries them out where KVM's emulator does not.
final class InterruptDeliveryTests: XCTestCase {
    let memory = ArrayMemory(size: 0x20_0000)
    static let idt: UInt64 = 0x1000, gdt: UInt64 = 0x2000, tss: UInt64 = 0x3000, handler: UInt64 = 0x5000

    /// A 64-bit CPU at `cpl` with an identity-mapped first 2 MiB, a GDT with
    /// 64-bit code (0x08 DPL 0, 0x1b DPL 3), data (0x10, 0x23) and a TSS.
    func cpu64(cpl: UInt8 = 0) -> CPUState {
        _ = memory.store(UInt64(0x10_1000 | 7), at: 0x10_0000)
        _ = memory.store(UInt64(0x10_2000 | 7), at: 0x10_1000)
        _ = memory.store(UInt64(0x87), at: 0x10_2000)                               // 2 MiB, user, writable
        for (i, d) in [UInt64(0), 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff, 0x00af_fa00_0000_ffff, 0x00cf_f200_0000_ffff]
            .enumerated() { _ = memory.store(d, at: Self.gdt + 8 * UInt64(i)) }
        _ = memory.store(UInt64(0x9000), at: Self.tss + 4)                         // RSP0
        _ = memory.store(UInt64(0xa000), at: Self.tss + 0x24)                      // IST1
        var s = CPUState()
        s.cr0 = 0x8000_0011; s.cr4 = 0x20; s.efer = 0x500; s.cr3 = 0x10_0000
        s.cs = SegmentState(selector: cpl == 0 ? 0x08 : 0x1b, limit: 0xffff_ffff, type: 0xb, dpl: cpl, l: true, g: true)
        s.ss = SegmentState(selector: cpl == 0 ? 0x10 : 0x23, limit: 0xffff_ffff, type: 0x3, dpl: cpl, db: true, g: true)
        s.gdtr = TableRegister(base: Self.gdt, limit: 0x27)
        s.idtr = TableRegister(base: Self.idt, limit: 0xfff)
        s.tr = SegmentState(selector: 0x28, base: Self.tss, limit: 0x67, type: 0xb, s: false)
        s.rip = 0x4000
        s.rflags = 0x202 | 1 << 8                                                   // IF, TF
        s.gprs[.rsp] = 0x8008
        return s
    }

    /// A 64-bit gate: `type` 0xe (interrupt) or 0xf (trap).
    func gate64(_ vector: UInt8, dpl: UInt64 = 0, type: UInt64 = 0xe, ist: UInt64 = 0, present: Bool = true) {
        let h = Self.handler
        let lo = (h & 0xffff) | 0x08 << 16 | ist << 32 | type << 40 | dpl << 45 | (present ? 1 << 47 : 0) | (h >> 16 & 0xffff) << 48
        _ = memory.store(lo, at: Self.idt + 16 * UInt64(vector))
        _ = memory.store(h >> 32, at: Self.idt + 16 * UInt64(vector) + 8)
    }

    func deliver(_ vector: UInt8, software: Bool = true, _ cpu: CPUState) -> Result<CPUState, InterruptDelivery.Failure> {
        InterruptDelivery.deliver(vector: vector, softwareInterrupt: software, returnRIP: cpu.rip + 2, cpu: cpu, memory: memory)
    }

    func testSamePrivilegeIn64BitMode() throws {
        gate64(0x80)
        let before = cpu64()
        let after = try deliver(0x80, before).get()
        XCTAssertEqual(after.rip, Self.handler)
        XCTAssertEqual(after.cs.selector, 0x08)
        XCTAssertEqual(after.gprs[.rsp], 0x8000 - 40, "aligned to 16, then five words")
        XCTAssertEqual(after.rflags, 0x2, "IF cleared by the interrupt gate, TF cleared")
        let frame = (0..<5).map { memory.load(UInt64.self, at: 0x8000 - 40 + 8 * UInt64($0))! }
        XCTAssertEqual(frame, [0x4002, 0x08, 0x302, 0x8008, 0x10], "RIP after INT, CS, RFLAGS, RSP, SS")
    }

    func testATrapGateKeepsIF() throws {
        gate64(3, type: 0xf)
        XCTAssertEqual(try deliver(3, cpu64()).get().rflags, 0x202)
    }

    func testFromCPL3ThroughADPL3GateSwitchesToRSP0() throws {
        gate64(0x80, dpl: 3)
        let after = try deliver(0x80, cpu64(cpl: 3)).get()
        XCTAssertEqual(after.cpl, 0)
        XCTAssertEqual(after.cs.selector, 0x08)
        XCTAssertEqual(after.ss.selector, 0, "a null SS with RPL 0")
        XCTAssertEqual(after.gprs[.rsp], 0x9000 - 40)
        XCTAssertEqual(memory.load(UInt64.self, at: 0x9000 - 8), 0x23, "the old SS")
        XCTAssertEqual(memory.load(UInt64.self, at: 0x9000 - 16), 0x8008, "the old RSP")
    }

    func testTheGateDPLGuardsSoftwareInterruptsOnly() {
        gate64(0x80, dpl: 0)
        XCTAssertEqual(deliver(0x80, cpu64(cpl: 3)), .failure(.exception(.generalProtection(0x80 << 3 | 2))))
        gate64(1, dpl: 0)
        XCTAssertNoThrow(try deliver(1, software: false, cpu64(cpl: 3)).get(), "INT1 ignores the gate's DPL")
    }

    func testGateFaults() {
        gate64(0x81, present: false)
        XCTAssertEqual(deliver(0x81, cpu64()), .failure(.exception(X86Exception(vector: 11, errorCode: 0x81 << 3 | 2))))
        gate64(0x82, type: 0x5)                                                     // a task gate
        XCTAssertEqual(deliver(0x82, cpu64()), .failure(.exception(.generalProtection(0x82 << 3 | 2))))
        var small = cpu64()
        small.idtr.limit = 0x80 * 16 - 1
        gate64(0x80)
        XCTAssertEqual(deliver(0x80, small), .failure(.exception(.generalProtection(0x80 << 3 | 2))), "beyond the IDT limit")
    }

    func testAnISTGateUsesItsStack() throws {
        gate64(3, ist: 1)
        XCTAssertEqual(try deliver(3, cpu64()).get().gprs[.rsp], 0xa000 - 40)
    }

    func testProtectedModePushesThreeWordsAtTheSamePrivilege() throws {
        var s = CPUState()
        s.cr0 = 0x11
        s.cs = SegmentState(selector: 0x08, limit: 0xffff_ffff, type: 0xb, db: true, g: true)
        s.ss = SegmentState(selector: 0x10, limit: 0xffff_ffff, type: 0x3, db: true, g: true)
        s.gdtr = TableRegister(base: Self.gdt, limit: 0x17)
        s.idtr = TableRegister(base: Self.idt, limit: 0x7ff)
        for (i, d) in [UInt64(0), 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff].enumerated() {
            _ = memory.store(d, at: Self.gdt + 8 * UInt64(i))
        }
        _ = memory.store((Self.handler & 0xffff) | 0x08 << 16 | 0xe << 40 | 1 << 47, at: Self.idt + 8 * 0x30)
        s.rip = 0x4000
        s.rflags = 0x202
        s.gprs[.rsp] = 0x8000
        let after = try deliver(0x30, s).get()
        XCTAssertEqual(after.rip, Self.handler)
        XCTAssertEqual(after.gprs[.rsp], 0x8000 - 12)
        XCTAssertEqual((0..<3).map { memory.load(UInt32.self, at: 0x8000 - 12 + 4 * UInt64($0))! }, [0x4002, 0x08, 0x202])
    }
}
