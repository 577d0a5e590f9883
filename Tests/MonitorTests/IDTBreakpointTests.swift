import XCTest
import NestedVMX
@testable import Monitor

/// The breakpoint channel in protected mode: 8-byte gates whose handler is
/// the offset plus the code segment's base (SDM Vol. 3A 6.11), and the
/// 4-byte exception frames it unwinds (6.12.1).
final class IDTBreakpointTests: XCTestCase {
    private let memory = ArrayMemory(size: 0x10000)

    /// Flat protected mode, paging off: GDT at 0x1000, IDT at 0x2000.
    private func protectedMode() -> CPUState {
        var cpu = CPUState()
        cpu.cr0 = 0x11
        cpu.gdtr = TableRegister(base: 0x1000, limit: 0x1f)
        cpu.idtr = TableRegister(base: 0x2000, limit: 0x7ff)
        cpu.cs.selector = 0x08
        // 0x08: flat code; 0x10: code based at 0x10000.
        _ = memory.store(UInt64(0x00cf_9b00_0000_ffff), at: 0x1008)
        _ = memory.store(UInt64(0x00cf_9b01_0000_ffff), at: 0x1010)
        return cpu
    }

    private func gate(_ vector: Int, selector: UInt64, offset: UInt64, type: UInt64 = 0xe) {
        let lo = (offset & 0xffff) | selector << 16 | (0x80 | type) << 40 | (offset >> 16) << 48
        _ = memory.store(lo, at: 0x2000 + UInt64(vector * 8))
    }

    func testProtectedModeGatesAddTheirSegmentBase() {
        let cpu = protectedMode()
        gate(6, selector: 0x08, offset: 0x0020_0000)
        gate(0x30, selector: 0x10, offset: 0x1234)
        gate(0x31, selector: 0x10, offset: 0x1234, type: 0x5)      // task gate: no handler to watch
        gate(0x32, selector: 0x14, offset: 0x1234)                 // LDT selector: not followed
        gate(0x33, selector: 0x20, offset: 0x1234)                 // beyond the GDT limit
        var bp = IDTBreakpoints(vectors: [6, 0x30, 0x31, 0x32])
        XCTAssertTrue(bp.refresh(cpu: cpu, memory: memory))
        XCTAssertEqual([6, 0x30, 0x31, 0x32].map { bp.handler(of: $0) }, [0x20_0000, 0x1_1234, nil, nil])
        bp.watch([0x33])
        XCTAssertTrue(bp.refresh(cpu: cpu, memory: memory), "the breakpoints on 6 and 0x30 come off")
        XCTAssertFalse(bp.refresh(cpu: cpu, memory: memory), "and stay off")
        XCTAssertEqual([6, 0x33].map { bp.handler(of: $0) }, [nil, nil], "6 is no longer watched; 0x33's selector is beyond the GDT")
        XCTAssertEqual(bp.debugRegisters[7], 0, "no handler, no enabled breakpoint")
    }

    /// The refresh before every entry asks for the whole state only to
    /// walk: when the key changes, and for 32-bit gates (their handler needs
    /// the GDT); 64-bit gates with an unchanged key are re-read from memory
    /// alone, and a rewritten gate is still seen.
    func testTheWholeStateIsBuiltOnlyToWalk() {
        var cpu = protectedMode()
        cpu.efer = 0x500                                   // IA-32e mode, paging off: 16-byte gates
        let offset: UInt64 = 0x0020_0000
        let lo = (offset & 0xffff) | 0x08 << 16 | UInt64(0x8e) << 40 | (offset >> 16 & 0xffff) << 48
        _ = memory.store(lo, at: 0x2000 + 6 * 16)
        _ = memory.store(UInt64(0), at: 0x2000 + 6 * 16 + 8)
        var bp = IDTBreakpoints(vectors: [6])
        var built = 0
        let key = IDTBreakpoints.Key(cpu)
        XCTAssertTrue(bp.refresh(key: key, cpu: { built += 1; return cpu }, memory: memory))
        XCTAssertEqual(bp.handler(of: 6), offset)
        XCTAssertEqual(built, 1, "one walk for the new key")
        XCTAssertFalse(bp.refresh(key: key, cpu: { built += 1; return cpu }, memory: memory))
        XCTAssertEqual(built, 1, "none while the key holds")
        _ = memory.store(lo + 0x10, at: 0x2000 + 6 * 16)     // the handler moves
        XCTAssertTrue(bp.refresh(key: key, cpu: { built += 1; return cpu }, memory: memory))
        XCTAssertEqual(bp.handler(of: 6), offset + 0x10)
        XCTAssertEqual(built, 1)

        let legacy = protectedMode()
        gate(6, selector: 0x10, offset: 0x1234)
        XCTAssertTrue(bp.refresh(key: IDTBreakpoints.Key(legacy), cpu: { built += 1; return legacy }, memory: memory))
        XCTAssertEqual(bp.handler(of: 6), 0x1_1234)
        XCTAssertEqual(built, 2, "a 32-bit gate's handler needs the GDT")
    }

    func testRealModeHasNoGates() {
        var cpu = protectedMode()
        cpu.cr0 = 0x10
        gate(6, selector: 0x08, offset: 0x1000)
        var bp = IDTBreakpoints(vectors: [6])
        XCTAssertFalse(bp.refresh(cpu: cpu, memory: memory))
        XCTAssertNil(bp.udHandler)
    }

    func testProtectedModeFrameAtTheSamePrivilegeLevel() throws {
        var cpu = protectedMode()
        cpu.gprs[.rsp] = 0x3000
        cpu.ss.selector = 0x10
        for (i, v) in [UInt32(0x6), 0x0010_0000, 0x08, 0x202].enumerated() { _ = memory.store(v, at: 0x3000 + UInt64(4 * i)) }
        let frame = try XCTUnwrap(ExceptionFrame(cpu: cpu, hasErrorCode: true, memory: memory))
        XCTAssertEqual(frame.errorCode, 6)
        XCTAssertEqual(frame.rip, 0x10_0000)
        XCTAssertEqual(frame.cs, 0x08)
        XCTAssertEqual(frame.rflags, 0x202)
        XCTAssertEqual(frame.rsp, 0x3010, "ESP before the delivery: nothing else was pushed")
        XCTAssertEqual(frame.ss, 0x10)
    }

    func testProtectedModeFrameFromUserMode() throws {
        var cpu = protectedMode()
        cpu.gprs[.rsp] = 0x3000
        for (i, v) in [UInt32(0x0040_0000), 0x1b, 0x3202, 0x0080_0000, 0x23].enumerated() {
            _ = memory.store(v, at: 0x3000 + UInt64(4 * i))
        }
        let frame = try XCTUnwrap(ExceptionFrame(cpu: cpu, hasErrorCode: false, memory: memory))
        XCTAssertEqual(frame.rip, 0x40_0000)
        XCTAssertEqual(frame.cs, 0x1b)
        XCTAssertEqual(frame.rsp, 0x80_0000, "CPL 3 to 0 pushes the old ESP and SS")
        XCTAssertEqual(frame.ss, 0x23)
    }
}
