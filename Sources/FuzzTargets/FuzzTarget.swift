/// The libFuzzer targets: one for each parser or rule set that takes guest
/// or file input (docs/FUZZING.md). Each states its invariant; a broken one
/// traps, as does any Swift runtime check.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// VMX instruction bytes in a random CPU mode, decoded and executed
    /// against a random VMX state: a decode fails with #UD or #GP(0) only;
    /// an executed instruction faults without changing anything, or
    /// completes with RIP past it and VMfail numbers of SDM 31.4.
    case decoder
    /// A linear address through random page tables in random paging modes
    /// (SDM Vol. 3A 4): a translation stays below MAXPHYADDR and repeats; a
    /// fault is #PF whose error code matches the access (4.7).
    case pageWalk = "page-walk"
    /// A guest-physical address through a random EPT (SDM 29.3): a
    /// translation stays below MAXPHYADDR and honours the access rights; a
    /// violation's qualification names the access.
    case eptWalk = "ept-walk"
    /// A VMCS12 region loaded as VMPTRLD does, then the VM-entry checks and,
    /// when they pass, the entry itself (SDM 25.11.2, 27): every field
    /// reads within its width, and a failure is one the SDM defines.
    case vmcsEntry = "vmcs-entry"
    /// Which L2 exits go to L1, and the VM exit L0 then performs (SDM 26.1,
    /// 26.2, 28): the bitmaps decide as the SDM says, and the exit records
    /// the reason it was given.
    case exitRouting = "exit-routing"
    /// A trace file, with every analysis and export run on what the reader
    /// accepts: a rejection is a TraceError; an accepted trace's records
    /// fit the file.
    case trace
    /// A kernel image loaded as Multiboot: a refusal names the image; a
    /// load puts everything inside the guest's RAM.
    case loader

    /// Runs the target on one input.
    public func run(_ data: [UInt8]) {
        switch self {
        case .decoder: DecoderTarget.run(data)
        case .pageWalk: PagingTargets.pageWalk(data)
        case .eptWalk: PagingTargets.eptWalk(data)
        case .vmcsEntry: VMCSTargets.entry(data)
        case .exitRouting: VMCSTargets.exitRouting(data)
        case .trace: TraceTarget.run(data)
        case .loader: LoaderTarget.run(data)
        }
    }
}
