/// Effective and linear addresses of decoded memory operands
/// (SDM Vol. 3A 3.4 and 3.7.5; 5.3 limit checking; 5.4 type checking;
/// 3.3.7.1 canonical addressing).
extension DecodedInstruction {
    public func effectiveAddress(_ m: MemoryOperand, state: CPUState) -> UInt64 {
        m.effectiveAddress(state: state, instructionLength: length)
    }

    public func linearAddress(_ m: MemoryOperand, state: CPUState, size: Int, write: Bool) -> Result<UInt64, X86Exception> {
        m.linearAddress(state: state, instructionLength: length, size: size, write: write)
    }

    static func addressMask(_ bits: Int) -> UInt64 {
        bits >= 64 ? ~0 : (UInt64(1) << UInt64(bits)) - 1
    }
}

extension MemoryOperand {
    /// base + index*scale + displacement, truncated to the address size.
    /// RIP-relative operands are relative to the next instruction
    /// (state.rip + instructionLength), SDM Vol. 2 2.2.1.6.
    public func effectiveAddress(state: CPUState, instructionLength: Int) -> UInt64 {
        let m = self
        var ea = UInt64(bitPattern: m.displacement)
        if m.ripRelative { ea = ea &+ state.rip &+ UInt64(instructionLength) }
        if let base = m.base { ea = ea &+ state.gprs[base] }
        if let index = m.index { ea = ea &+ state.gprs[index] &* UInt64(m.scale) }
        return ea & DecodedInstruction.addressMask(m.addressSize)
    }

    /// The linear address of `size` bytes at memory operand `m`, with the
    /// segmentation checks of the VMX instructions' protected-mode
    /// exceptions (SDM Vol. 3C 31.3: "#GP(0) if the memory operand
    /// effective address is outside the CS, DS, ES, FS, or GS segment limit",
    /// "#SS(0) ... outside the SS segment limit", "#GP(0) if the destination
    /// operand is located in a read-only data segment or any code segment").
    ///
    /// 64-bit mode: only FS/GS add their base; no limit or type checks; the
    /// first and last byte must be canonical (48-bit; 57-bit with CR4.LA57), else #GP(0), or
    /// #SS(0) when the segment is SS.
    ///
    /// Other modes: an unusable (null) segment faults; the offset range
    /// [ea, ea+size-1] is checked against the limit (expand-down data
    /// segments: valid offsets are limit+1 ... 0xFFFF or 0xFFFFFFFF by D/B);
    /// writes need a writable data segment, reads a data or readable code
    /// segment. `SegmentState.limit` is taken as the byte-granular limit (the
    /// VMCS format: G already applied). Type and null checks are skipped in
    /// real and v8086 mode. The result is base + offset truncated to 32 bits.
    public func linearAddress(state: CPUState, instructionLength: Int, size: Int, write: Bool) -> Result<UInt64, X86Exception> {
        let m = self
        let ea = effectiveAddress(state: state, instructionLength: instructionLength)
        let fault: X86Exception = m.segment == .ss ? .stackFault(0) : .generalProtection(0)
        let span = UInt64(max(size, 1) - 1)

        if state.mode64 {
            var linear = ea
            if m.segment == .fs || m.segment == .gs { linear = linear &+ state[m.segment].base }
            let la57 = state.cr4 & (1 << 12) != 0
            guard Self.isCanonical(linear, la57: la57), Self.isCanonical(linear &+ span, la57: la57) else {
                return .failure(fault)
            }
            return .success(linear)
        }

        let seg = state[m.segment]
        let checkDescriptor = state.protectedMode && !state.virtual8086
        if checkDescriptor {
            if seg.unusable { return .failure(fault) }
            // Type checks (SDM Vol. 3A 5.4.1; type bit 3 = code, bit 1 = R (code) / W (data)).
            let isCode = seg.type & 0x8 != 0
            let rwBit = seg.type & 0x2 != 0
            if write && (isCode || !rwBit) { return .failure(.generalProtection(0)) }
            if !write && isCode && !rwBit { return .failure(.generalProtection(0)) }
        }
        // Limit checks (SDM Vol. 3A 5.3).
        let limit = UInt64(seg.limit)
        let last = ea + span
        let expandDown = seg.type & 0xC == 0x4      // data segment with E = 1
        if expandDown {
            let upper: UInt64 = seg.db ? 0xFFFF_FFFF : 0xFFFF
            if ea <= limit || last > upper { return .failure(fault) }
        } else if last > limit {
            return .failure(fault)
        }
        return .success((seg.base &+ ea) & 0xFFFF_FFFF)
    }

    /// Canonical: bits 63:47 all equal (SDM Vol. 3A 3.3.7.1), or bits 63:56
    /// with 5-level paging (CR4.LA57, SDM Vol. 3A 4.5).
    public static func isCanonical(_ address: UInt64, la57: Bool = false) -> Bool {
        let top = Int64(bitPattern: address) >> (la57 ? 56 : 47)
        return top == 0 || top == -1
    }
}
