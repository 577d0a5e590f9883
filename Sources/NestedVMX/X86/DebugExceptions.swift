import VMXArch

/// Debug exceptions (#DB) across VMX transitions: the DR6 bits an exit
/// reports, the pending debug exceptions a VM entry carries into L2, and DR6
/// when such a #DB is delivered.
public enum DebugExceptions {
    /// B0-B3 (DR6 and pending debug exceptions bits 3:0).
    public static let breakpointHits: UInt64 = 0xf
    /// Pending debug exceptions bit 12: an enabled breakpoint hit (25.4.2).
    public static let enabledBreakpoint: UInt64 = 1 << 12
    /// DR6.BD (bit 13) and DR6.BS (bit 14).
    public static let debugRegisterAccess: UInt64 = 1 << 13, singleStep: UInt64 = 1 << 14

    /// The exit qualification of a #DB exception exit (SDM Vol. 3C 28.2.1,
    /// Table 28-1): B0-B3, BD and BS as the #DB would have set them in DR6,
    /// which the exit itself leaves unchanged. Bit 16 (RTM) stays clear:
    /// RTM is not advertised.
    public static func exitQualification(dr6: UInt64) -> UInt64 {
        dr6 & (breakpointHits | debugRegisterAccess | singleStep)
    }

    /// The #DB a VM entry leaves pending in L2 (SDM 27.7.3): the
    /// pending-debug-exceptions field when it has B0-B3, bit 12 or BS set
    /// and the entry injects no event (a vectoring entry ignores the field).
    /// Nil when there is none.
    public static func pendingAtEntry(_ vmcs: VMCS12, injecting: Bool) -> UInt64? {
        guard !injecting else { return nil }
        let pending = (vmcs.read(.guestPendingDebugExceptions) ?? 0) & (breakpointHits | enabledBreakpoint | singleStep)
        return pending == 0 ? nil : pending
    }

    /// DR6 once a pending #DB is delivered (SDM Vol. 3B 18.2.3 with 27.7.3):
    /// B0-B3 become the pending ones; BS is added, and the other bits stay.
    public static func dr6(_ dr6: UInt64, delivering pending: UInt64) -> UInt64 {
        (dr6 & ~breakpointHits) | (pending & (breakpointHits | singleStep))
    }
}

extension NestedExit {
    /// An exception exit for a #DB (exit reason 0, vector 1), which leaves
    /// DR6 unchanged (SDM 28.2.1).
    public var isDebugException: Bool {
        reason == .exceptionOrNMI && interruptionInfo & 0x8000_00ff == 0x8000_0001
    }
}
