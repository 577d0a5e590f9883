/// The kind of a linear-memory access, for the page-level protection checks
/// of SDM Vol. 3A 4.6 and the #PF error code of 4.7.
public struct MemoryAccess: Sendable, Equatable {
    public var write: Bool
    /// User-mode access (CPL = 3). The operands of VMX instructions are data
    /// accesses at the current CPL: user = (cpl == 3).
    public var user: Bool
    /// Instruction fetch.
    public var fetch: Bool

    public init(write: Bool = false, user: Bool = false, fetch: Bool = false) {
        self.write = write; self.user = user; self.fetch = fetch
    }

    /// A data access at the current privilege level of `state`.
    public static func data(write: Bool, state: CPUState) -> MemoryAccess {
        MemoryAccess(write: write, user: state.cpl == 3, fetch: false)
    }
}

/// Why a linear-memory access failed.
public enum LinearAccessError: Error, Equatable, Sendable {
    /// The translation faulted (#PF, with CR2 in `faultAddress`).
    case fault(X86Exception)
    /// The translation succeeded but the physical address is not RAM
    /// (MMIO or unbacked): the caller decides what that means.
    case notRAM(physical: UInt64)
}
