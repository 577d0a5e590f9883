import NestedVMX
import VMXArch

/// `FuzzTarget.decoder`. Input: a CPU state, VMX state, 15 instruction
/// bytes, then guest RAM (page tables, VMXON and VMCS regions, operands).
enum DecoderTarget {
    static func run(_ data: [UInt8]) {
        var input = FuzzInput(data)
        var cpu = FuzzCPU.state(&input)
        var vmx = VMXState(capabilities: .terrapin(physicalAddressBits: 46), lockedByFirmware: input.bool())
        vmx.vmxe = input.bool()
        vmx.inVMXOperation = input.bool()
        let vmxon = UInt64(input.u8()) << 12 | UInt64(input.u8() & 0x3)
        let current = UInt64(input.u8()) << 12
        let bytes = input.take(VMXDecoder.maximumLength)
        let memory = FuzzCPU.memory(input.rest())
        if vmx.inVMXOperation {
            vmx.vmxonPointer = vmxon
            vmx.current = VMCS12(loadingFrom: current, memory: memory)
        }

        // The other x86 decoders L0 runs on guest bytes: total functions.
        _ = X86Decoders.decodeMovToCR4(bytes)
        _ = X86Decoders.isVMXOpcode(bytes)
        if let n = X86Decoders.ioInstructionLength(bytes, mode64: cpu.mode64) {
            invariant((1...VMXDecoder.maximumLength).contains(n), "I/O instruction length \(n)")
        }
        _ = ExitRouting.ioEncoding(bytes)
        if let move = VMXDecoder.decodeMemoryMove(bytes, state: cpu) {
            invariant((1...VMXDecoder.maximumLength).contains(move.length) && [1, 2, 4, 8].contains(move.size), "\(move)")
        }

        let decoded: DecodedInstruction
        switch VMXDecoder.decode(bytes, state: cpu) {
        case let .failure(e):
            invariant(e == .invalidOpcode || e == .generalProtection(0), "decode fault \(e)")
            return
        case let .success(d):
            decoded = d
        }
        invariant((1...VMXDecoder.maximumLength).contains(decoded.length), "length \(decoded.length)")
        _ = decoded.instructionInformation()

        let before = cpu, vmxBefore = vmx
        let execution = VMXSemantics.execute(decoded, cpu: &cpu, vmx: &vmx, memory: memory)
        invariant(execution.instruction == decoded.instruction, "executed \(execution.instruction)")
        switch execution.result {
        case let .fault(e):
            // SDM 31.2: a fault changes nothing.
            invariant([6, 12, 13, 14].contains(e.vector), "fault \(e)")
            invariant(cpu == before && vmx == vmxBefore, "\(e) changed state")
        case .entryFailed, .vmEntry:
            invariant(decoded.instruction == .vmlaunch || decoded.instruction == .vmresume, "entry from \(decoded.instruction)")
            invariant(cpu == before, "a VM entry changed L1's state before it happened")
        case let .failValid(n):
            invariant(VMInstructionError(rawValue: n) != nil, "VMfailValid(\(n))")
            fallthrough
        case .succeed, .failInvalid:
            // SDM 31.2: the instruction completes: RIP past it, in the code size.
            invariant(cpu.rip == before.wrappingRIP(before.rip &+ UInt64(decoded.length)), "RIP after \(decoded.instruction)")
        }
        if let current = vmx.current {
            for field in VMCSField.allFields {
                guard let value = current.read(field) else { continue }
                invariant(value & ~field.width.valueMask == 0, "\(field) holds \(value), wider than its width")
            }
        }
    }
}
