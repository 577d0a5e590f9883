import NestedVMX
import XCTest

/// The instructions L0 recognises from their bytes alone (SDM Vol. 2), and
/// RIP wrapping at the code size (SDM Vol. 1 3.5).
final class X86DecoderTests: XCTestCase {
    func testIOInstructionLengths() {
        XCTAssertEqual(X86Decoders.ioInstructionLength([0xec], mode64: false), 1)                 // in al, dx
        XCTAssertEqual(X86Decoders.ioInstructionLength([0x66, 0xed], mode64: false), 2)           // in ax, dx
        XCTAssertEqual(X86Decoders.ioInstructionLength([0xe4, 0x80], mode64: false), 2)           // in al, 0x80
        XCTAssertEqual(X86Decoders.ioInstructionLength([0x66, 0xe5, 0x80], mode64: true), 3)
        XCTAssertEqual(X86Decoders.ioInstructionLength([0xf3, 0x6c], mode64: true), 2)            // rep insb
        XCTAssertEqual(X86Decoders.ioInstructionLength([0x48, 0xf3, 0x6d], mode64: true), 3)      // REX is a prefix in 64-bit mode
        XCTAssertNil(X86Decoders.ioInstructionLength([0x48, 0xec], mode64: false), "0x48 is DEC eax outside 64-bit mode")
        XCTAssertNil(X86Decoders.ioInstructionLength([0x90], mode64: false))
        XCTAssertNil(X86Decoders.ioInstructionLength([], mode64: false), "nothing fetched: no length")
        XCTAssertNil(X86Decoders.ioInstructionLength([UInt8](repeating: 0x66, count: 15), mode64: false))
        XCTAssertNil(X86Decoders.ioInstructionLength([UInt8](repeating: 0x66, count: 14) + [0xe4, 0x80], mode64: false),
                     "16 bytes is past the 15-byte limit")
    }

    /// KVM reports an instruction only up to a page boundary: the rest is
    /// fetched, and used only if it agrees with what was reported.
    func testInstructionBytesAcrossAPageAreCompleted() {
        let memory = ArrayMemory(size: 0x3000)
        _ = memory.write(0xffe, bytes: [0x0f, 0x79, 0xc3, 0x90])        // vmwrite rax, rbx across 0x1000
        var cpu = CPUState()
        cpu.rip = 0xffe
        cpu.cs = SegmentState(limit: 0xffff_ffff, type: 0xb, db: true, g: true)
        XCTAssertEqual(Array(InstructionFetch.completing([0x0f, 0x79], cpu: cpu, memory: memory).prefix(3)), [0x0f, 0x79, 0xc3])
        XCTAssertEqual(InstructionFetch.completing([0x0f, 0x78], cpu: cpu, memory: memory), [0x0f, 0x78], "memory disagrees: as reported")
        let full = [UInt8](repeating: 0x66, count: 15)
        XCTAssertEqual(InstructionFetch.completing(full, cpu: cpu, memory: memory), full, "15 bytes are complete")
    }

    func testInstructionsThatCPUIDGates() {
        XCTAssertEqual(X86Decoders.cpuidGated([0x0f, 0x01, 0xf9], mode64: true), .rdtscp)
        XCTAssertEqual(X86Decoders.cpuidGated([0xf3, 0x0f, 0xc7, 0xf8], mode64: false), .rdpid)              // rdpid eax
        XCTAssertEqual(X86Decoders.cpuidGated([0xf3, 0x41, 0x0f, 0xc7, 0xf9], mode64: true), .rdpid)         // rdpid r9
        XCTAssertNil(X86Decoders.cpuidGated([0xf3, 0x41, 0x0f, 0xc7, 0xf9], mode64: false), "0x41 is INC ecx")
        XCTAssertEqual(X86Decoders.cpuidGated([0x0f, 0xc7, 0xf8], mode64: true), .rdseed, "without F3: RDSEED")
        XCTAssertEqual(X86Decoders.cpuidGated([0x48, 0x0f, 0xc7, 0xf0], mode64: true), .rdrand)
        XCTAssertNil(X86Decoders.cpuidGated([0xf3, 0x0f, 0xc7, 0x38], mode64: true), "the memory form is VMPTRST")
        XCTAssertNil(X86Decoders.cpuidGated([0x0f, 0xc7, 0x30], mode64: true), "the memory form of /6 is VMPTRLD")
        XCTAssertNil(X86Decoders.cpuidGated([0x0f, 0x01, 0xf8], mode64: true), "SWAPGS")
        XCTAssertNil(X86Decoders.cpuidGated([0x0f, 0x01], mode64: true), "cut short")
        XCTAssertEqual(X86Decoders.cpuidGated([0x0f, 0x01, 0xc8], mode64: true), .monitor)
        XCTAssertEqual(X86Decoders.cpuidGated([0x0f, 0x01, 0xc9], mode64: true), .mwait)
        XCTAssertEqual(X86Decoders.cpuidGated([0x0f, 0x01, 0xd1], mode64: true), .xsetbv)
        XCTAssertEqual(X86Decoders.cpuidGated([0x66, 0x0f, 0x38, 0x82, 0x18], mode64: true), .invpcid)
        XCTAssertNil(X86Decoders.cpuidGated([0x0f, 0x38, 0x82, 0x18], mode64: true), "INVPCID needs 66")
    }

    func testOUTLengthsFromTheBytesBeforeRIP() {
        XCTAssertEqual(X86Decoders.outLength(endingWith: [0x90, 0xe6, 0x80], port: 0x80, size: 1), 2)
        XCTAssertEqual(X86Decoders.outLength(endingWith: [0x66, 0xe7, 0x80], port: 0x80, size: 2), 3)
        XCTAssertEqual(X86Decoders.outLength(endingWith: [0x90, 0x66, 0xef], port: 0x3f8, size: 2), 2)
        XCTAssertEqual(X86Decoders.outLength(endingWith: [0x90, 0x90, 0xee], port: 0x3f8, size: 1), 1)
        XCTAssertEqual(X86Decoders.outLength(endingWith: [0x90, 0xe6, 0x80], port: 0x3f8, size: 1), 1, "the immediate must be the port")
        XCTAssertEqual(X86Decoders.outLength(endingWith: [], port: 0x80, size: 1), 1)
    }

    func testMovToCR4AndVMXOpcodes() {
        XCTAssertEqual(X86Decoders.decodeMovToCR4([0x0f, 0x22, 0xe0])?.register, 0)              // mov cr4, rax
        XCTAssertEqual(X86Decoders.decodeMovToCR4([0x41, 0x0f, 0x22, 0xe1])?.register, 9)        // mov cr4, r9
        XCTAssertEqual(X86Decoders.decodeMovToCR4([0x41, 0x0f, 0x22, 0xe1])?.length, 4)
        XCTAssertNil(X86Decoders.decodeMovToCR4([0x0f, 0x22, 0xd8]), "mov cr3, rax")
        XCTAssertNil(X86Decoders.decodeMovToCR4([0x0f, 0x22]))
        XCTAssertTrue(X86Decoders.isVMXOpcode([0x0f, 0x01, 0xc1]))                               // vmcall
        XCTAssertTrue(X86Decoders.isVMXOpcode([0xf0, 0x0f, 0x78, 0xc3]))                         // lock vmread
        XCTAssertTrue(X86Decoders.isVMXOpcode([0x66, 0x0f, 0x38, 0x80, 0x03]))                   // invept
        XCTAssertTrue(X86Decoders.isVMXOpcode([0xf3, 0x0f, 0xc7, 0x30]))                         // vmxon
        XCTAssertFalse(X86Decoders.isVMXOpcode([0x0f, 0xc7, 0x08]), "cmpxchg8b is /1")
        XCTAssertFalse(X86Decoders.isVMXOpcode([0x0f, 0x01, 0xd0]), "xgetbv")
    }

    func testRIPWrapsAtTheCodeSize() {
        var cpu = CPUState()
        cpu.cr0 = 1
        cpu.cs.db = true
        XCTAssertEqual(cpu.wrappingRIP(0xffff_ffff &+ 1), 0)
        XCTAssertEqual(cpu.wrappingRIP(0 &- 2), 0xffff_fffe)
        cpu.cs.db = false
        XCTAssertEqual(cpu.wrappingRIP(0x1_0001), 1)
        cpu.efer = 1 << 10
        cpu.cs.l = true
        XCTAssertEqual(cpu.wrappingRIP(0 &- 2), .max - 1)
    }
}

/// The basic exit reason each VMX instruction has when L2 executes it
/// (SDM Vol. 3C Appendix C; 26.1.2 and 26.1.3).
final class VMXInstructionExitReasonTests: XCTestCase {
    func testEveryVMXInstructionHasItsExitReason() {
        let expected: [(VMXInstruction, UInt16)] = [
            (.vmcall, 18), (.vmclear, 19), (.vmlaunch, 20), (.vmptrld, 21), (.vmptrst, 22), (.vmread, 23),
            (.vmresume, 24), (.vmwrite, 25), (.vmxoff, 26), (.vmxon, 27), (.invept, 50), (.invvpid, 53), (.vmfunc, 59),
        ]
        for (instruction, reason) in expected {
            XCTAssertEqual(instruction.exitReason.rawValue, reason, "\(instruction)")
        }
    }
}
