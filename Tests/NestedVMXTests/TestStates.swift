import NestedVMX

extension CPUState {
    /// A 64-bit CPL-0 state with paging on (CR0.PG, PE, ET; CR4.PAE; EFER.LME
    /// and LMA; CS.L), for the decoders and the sensitive-instruction rules.
    static var longMode64: CPUState {
        var s = CPUState()
        s.cs.l = true
        s.efer = 0x500
        s.cr0 = 0x8000_0011
        s.cr4 = 0x20
        return s
    }
}
