import CKVM
import XCTest
@testable import KVM

/// The trap opcode for patching L2's sensitive instructions
/// (docs/PATCHING.md): on our hosts INT3 at CPL 0 is an emulation failure
/// that carries its byte, with or without KVM_GUESTDBG_USE_SW_BP, and at
/// CPL 3 a #BP through the guest's IDT (here an empty one, so the
/// delivery shuts the vCPU down after RIP moved past the INT3).
final class TrapOpcodeTests: XCTestCase {
    /// A 64-bit vCPU at `cpl` whose page tables let CPL 3 in.
    func vm(cpl3: Bool, code: [UInt8]) throws -> TestVM {
        let t = try TestVM(code: code)
        try t.enterLongMode()
        t.memory.store(UInt64(0x6000 | 0x7), at: 0x5000)            // user, writable, present
        t.memory.store(UInt64(0x7000 | 0x7), at: 0x6000)
        t.memory.store(UInt64(0x87), at: 0x7000)                      // 2 MiB, user
        if cpl3 {
            var s = try t.vcpu.getSRegs()
            s.cs.selector = 0x1b; s.cs.dpl = 3
            s.ss.selector = 0x23; s.ss.dpl = 3
            s.ds.selector = 0x23; s.ds.dpl = 3
            s.es = s.ds
            try t.vcpu.setSRegs(s)
        }
        return t
    }

    func testTrapOpcodes() throws {
        for swbp in [false, true] {
            let kernel = try vm(cpl3: false, code: [0xcc, 0xf4])
            if swbp { try kernel.vcpu.setGuestDebug([.enable, .useSoftwareBreakpoints]) }
            let exit = try kernel.run()
            let failure = try XCTUnwrap(exit.internalError, "CPL 0, USE_SW_BP \(swbp): \(exit)")
            XCTAssertEqual(failure.instruction?[0], 0xcc)
            XCTAssertEqual(kernel.vcpu.regs.rip, TestVM.codeAddress, "before the INT3")

            let user = try vm(cpl3: true, code: [0xcc, 0xf4])
            if swbp { try user.vcpu.setGuestDebug([.enable, .useSoftwareBreakpoints]) }
            let userExit = try user.run()
            XCTAssertTrue(userExit.isShutdown, "CPL 3, USE_SW_BP \(swbp): #BP through the empty IDT, got \(userExit)")
            XCTAssertEqual(user.vcpu.regs.rip, TestVM.codeAddress + 1, "the INT3 ran: a trap")
        }
    }
}
