import VMXArch

/// Which L2 exits L1 asked for (SDM Vol. 3C 26.1, 26.2): the "L1 wants it"
/// half of Linux's split. Pure functions of VMCS12 and L1 memory.
public enum ExitRouting {
    /// I/O: with "use I/O bitmaps", any port of the access whose bit is set in
    /// bitmap A (0-0x7fff) or B (0x8000-0xffff) exits, and so does an access
    /// wrapping past 0xffff; otherwise "unconditional I/O exiting" decides
    /// (SDM 26.1.3). A bitmap page outside RAM reads as all ones: exit.
    public static func wantsIO(port: UInt16, size: Int, vmcs: VMCS12, memory: some GuestMemoryAccess) -> Bool {
        guard vmcs.proc.contains(.useIOBitmaps) else { return vmcs.proc.contains(.unconditionalIOExiting) }
        for offset in 0..<max(size, 1) {
            let p = Int(port) + offset
            if p > 0xffff { return true }
            let bitmap = p < 0x8000 ? (vmcs.read(.ioBitmapA) ?? 0) : (vmcs.read(.ioBitmapB) ?? 0)
            let bit = p & 0x7fff
            let byte = memory.load(UInt8.self, at: bitmap + UInt64(bit / 8)) ?? 0xff
            if byte & (1 << (bit % 8)) != 0 { return true }
        }
        return false
    }

    /// An exception L2 raised: its bit in the exception bitmap decides, and
    /// for #PF the error-code mask and match invert that bit when they do
    /// not match (SDM 26.2).
    public static func wantsException(_ vector: Int, errorCode: UInt64?, vmcs: VMCS12) -> Bool {
        guard (0..<32).contains(vector) else { return false }
        let bit = (vmcs.read(.exceptionBitmap) ?? 0) & (1 << UInt64(vector)) != 0
        guard vector == 14 else { return bit }
        let pfec = errorCode ?? 0
        let matches = pfec & (vmcs.read(.pageFaultErrorCodeMask) ?? 0) == (vmcs.read(.pageFaultErrorCodeMatch) ?? 0)
        return matches ? bit : !bit
    }

    /// The vectors that push an error code (SDM Vol. 3A 6.13, Table 6-1).
    public static func hasErrorCode(_ vector: Int) -> Bool { [8, 10, 11, 12, 13, 14, 17, 21].contains(vector) }

    public static func wantsHLT(vmcs: VMCS12) -> Bool {
        vmcs.proc.contains(.hltExiting)
    }

    /// MOV to or from CR3 (SDM 26.1.3): a load exits under "CR3-load
    /// exiting" unless `value` is one of the first CR3-target-count target
    /// values; a store exits under "CR3-store exiting". Moves of the other
    /// control registers are not routed here yet (docs/PATCHING.md).
    public static func wantsCR3Move(toCR3: Bool, value: UInt64, vmcs: VMCS12) -> Bool {
        guard toCR3 else { return vmcs.proc.contains(.cr3StoreExiting) }
        guard vmcs.proc.contains(.cr3LoadExiting) else { return false }
        let count = min(Int(UInt32(truncatingIfNeeded: vmcs.read(.cr3TargetCount) ?? 0)), 4)
        return !(0..<count).contains { vmcs.read(VMCSField(VMCSField.cr3TargetValue0.rawValue + UInt32($0) * 2)) == value }
    }

    /// The guest/host mask and read shadow of CR0 or CR4 (25.6.6).
    static func maskAndShadow(_ cr: Int, vmcs: VMCS12) -> (mask: UInt64, shadow: UInt64) {
        cr == 0 ? (vmcs.read(.cr0GuestHostMask) ?? 0, vmcs.read(.cr0ReadShadow) ?? 0)
                : (vmcs.read(.cr4GuestHostMask) ?? 0, vmcs.read(.cr4ReadShadow) ?? 0)
    }

    /// MOV to CR0 or CR4 (26.1.3): an exit when a bit the guest/host mask
    /// owns differs between the source operand and the read shadow.
    public static func wantsControlRegisterWrite(_ cr: Int, value: UInt64, vmcs: VMCS12) -> Bool {
        let (mask, shadow) = maskAndShadow(cr, vmcs: vmcs)
        return (value ^ shadow) & mask != 0
    }

    /// The value a MOV to CR0 or CR4 that does not exit leaves in the
    /// register (26.3): the bits the mask owns keep their current values.
    public static func controlRegisterWritten(_ cr: Int, value: UInt64, current: UInt64, vmcs: VMCS12) -> UInt64 {
        let mask = maskAndShadow(cr, vmcs: vmcs).mask
        return (current & mask) | (value & ~mask)
    }

    /// What MOV from CR0 or CR4 reads in L2 (26.3): the bits the mask owns
    /// come from the read shadow, the others from the register.
    public static func controlRegisterRead(_ cr: Int, actual: UInt64, vmcs: VMCS12) -> UInt64 {
        let (mask, shadow) = maskAndShadow(cr, vmcs: vmcs)
        return (actual & ~mask) | (shadow & mask)
    }

    /// CLTS (26.1.3, 26.3): an exit when CR0.TS is set in the mask and the
    /// read shadow; with it set in the mask only, CLTS leaves CR0.TS alone.
    public enum CLTSOutcome: Equatable, Sendable { case exit, clearTS, noChange }
    public static func clts(vmcs: VMCS12) -> CLTSOutcome {
        let (mask, shadow) = maskAndShadow(0, vmcs: vmcs)
        let ts: UInt64 = 1 << 3
        guard mask & ts != 0 else { return .clearTS }
        return shadow & ts != 0 ? .exit : .noChange
    }

    /// A value L2 may load into CR0 or CR4 in VMX non-root operation: the
    /// bits fixed in VMX operation hold (IA32_VMX_CR0/CR4_FIXED0/1; with
    /// "unrestricted guest" PE and PG are free), else #GP(0) (26.3).
    public static func permitsControlRegister(_ cr: Int, value: UInt64, capabilities: VMXCapabilities, vmcs: VMCS12) -> Bool {
        guard cr == 0 else { return capabilities.permitsCR4(value) }
        let free: UInt64 = vmcs.proc2.contains(.unrestrictedGuest) ? 1 << 0 | 1 << 31 : 0
        let fixed0 = capabilities.cr0Fixed0 & ~free
        return value & fixed0 == fixed0 && value & ~capabilities.cr0Fixed1 == 0
    }

    /// The exit qualification of a control-register access (Table 28-3):
    /// the CR in bits 3:0, the access type in 5:4 (0 MOV to CR, 1 MOV from
    /// CR), the general-purpose register in 11:8.
    public static func controlRegisterQualification(_ move: ControlRegisterMove) -> UInt64 {
        UInt64(move.controlRegister & 0xf) | (move.toControlRegister ? 0 : 1) << 4 | UInt64(move.register & 0xf) << 8
    }

    /// LMSW (26.1.3): an exit when it would set PE while L1 owns PE and the
    /// shadow has it clear, or change an owned bit among MP, EM and TS from
    /// its shadowed value.
    public static func wantsLMSW(source: UInt16, vmcs: VMCS12) -> Bool {
        let (mask, shadow) = maskAndShadow(0, vmcs: vmcs)
        let s = UInt64(source)
        return (mask & 1 != 0 && shadow & 1 == 0 && s & 1 != 0) || (mask & 0xe) & (s ^ shadow) != 0
    }

    /// CR0 after an LMSW that does not exit (Vol. 2A "LMSW", 26.3): bits 3:0
    /// from the source, PE never cleared, and the owned bits kept.
    public static func lmswResult(source: UInt16, current: UInt64, vmcs: VMCS12) -> UInt64 {
        let mask = maskAndShadow(0, vmcs: vmcs).mask & 0xf
        let loaded = (UInt64(source) & 0xf) | (current & 1)
        return (current & ~0xf) | (current & mask) | (loaded & ~mask & 0xf)
    }

    /// LMSW's qualification (Table 28-3): CR0, access type 3, bit 6 for a
    /// memory operand, the source data in bits 31:16.
    public static func lmswQualification(source: UInt16, memory: Bool) -> UInt64 {
        3 << 4 | (memory ? 1 << 6 : 0) | UInt64(source) << 16
    }

    /// CLTS's qualification (Table 28-3): CR0, access type 2.
    public static let cltsQualification: UInt64 = 2 << 4

    /// The exit qualification of a MOV DR (Table 28-4): the debug register
    /// in bits 2:0, the direction in bit 4 (1 = MOV from DR), the
    /// general-purpose register in 11:8.
    public static func debugRegisterQualification(_ move: ControlRegisterMove) -> UInt64 {
        UInt64(move.controlRegister & 7) | (move.toControlRegister ? 0 : 1) << 4 | UInt64(move.register & 0xf) << 8
    }

    /// What an RDTSC that does not exit reads in L2 (26.3): L1's TSC, plus
    /// TSC_OFFSET under "use TSC offsetting" (no TSC scaling is offered).
    public static func l2TimeStampCounter(l1: UInt64, vmcs: VMCS12) -> UInt64 {
        vmcs.proc.contains(.useTSCOffsetting) ? l1 &+ (vmcs.read(.tscOffset) ?? 0) : l1
    }

    /// RDMSR/WRMSR: without MSR bitmaps every access exits; with them, the
    /// bit for the MSR in the read or write bitmap for its range decides, and
    /// MSRs outside both ranges always exit (SDM 26.1.3).
    public static func wantsMSR(_ index: UInt32, write: Bool, vmcs: VMCS12, memory: some GuestMemoryAccess) -> Bool {
        guard vmcs.proc.contains(.useMSRBitmaps) else { return true }
        let base = vmcs.read(.msrBitmap) ?? 0
        let offset: UInt64
        switch index {
        case 0...0x1fff: offset = write ? 2048 : 0
        case 0xc000_0000...0xc000_1fff: offset = write ? 3072 : 1024
        default: return true
        }
        let bit = UInt64(index & 0x1fff)
        let byte = memory.load(UInt8.self, at: base + offset + bit / 8) ?? 0xff
        return byte & (1 << (bit % 8)) != 0
    }

    /// How an I/O instruction is encoded (SDM Vol. 2B "IN", "OUT", "INS",
    /// "OUTS"), from its bytes: a string form (6C-6F), a REP prefix (F3, or
    /// F2, which the string forms treat alike), an immediate port (E4-E7).
    public static func ioEncoding(_ bytes: [UInt8]) -> (string: Bool, rep: Bool, immediate: Bool) {
        var rep = false
        for b in bytes {
            switch b {
            case 0xf3, 0xf2: rep = true
            case 0x66, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x40...0x4f: continue
            case 0x6c...0x6f: return (true, rep, false)
            case 0xe4...0xe7: return (false, false, true)
            default: return (false, false, false)
            }
        }
        return (false, false, false)
    }

    /// The exit qualification of an I/O instruction (SDM 28.2.1, Table 28-5):
    /// size - 1, direction (1 = IN), string, REP, operand encoding (1 = the
    /// port is an immediate), port.
    public static func ioQualification(port: UInt16, size: Int, input: Bool, string: Bool, rep: Bool,
                                       immediate: Bool = false) -> UInt64 {
        UInt64(max(size, 1) - 1) | (input ? 1 << 3 : 0) | (string ? 1 << 4 : 0) | (rep ? 1 << 5 : 0)
            | (immediate ? 1 << 6 : 0) | UInt64(port) << 16
    }
}
