import VMXArch

/// L1's VMX state as L0 keeps it: the virtual CR4.VMXE and
/// IA32_FEATURE_CONTROL, VMX operation, the VMXON region and the current
/// VMCS (cached). A plain value: the monitor owns one per vCPU.
public struct VMXState: Equatable, Sendable {
    /// The current-VMCS pointer when no VMCS is current (SDM 31.3 VMXON).
    public static let invalidPointer: UInt64 = .max

    public var capabilities: VMXCapabilities
    /// CR4.VMXE as L1 believes it to be; the real CR4 never has it.
    public var vmxe = false
    /// IA32_FEATURE_CONTROL (MSR 0x3a; SDM Vol. 3C 24.7).
    public var featureControl: FeatureControl
    public var inVMXOperation = false
    public var vmxonPointer: UInt64 = VMXState.invalidPointer
    /// The current VMCS, cached; nil when the pointer is invalid. With
    /// enlightened VM entry it is the eVMCS the VP assist page names.
    public var current: VMCS12?
    /// Hyper-V's VP assist page and whether the interface is offered at all
    /// (`--hyperv-evmcs`; docs/EVMCS.md).
    public var hyperV = HyperVState()
    /// The VM-entry checks' verdicts at the last entry, so that the next
    /// runs only those whose inputs changed (a cache; `EntryCheckMemo`).
    public var entryChecks = EntryCheckMemo()

    /// The IA32_FEATURE_CONTROL bits L0 lets L1 set: lock, VMX inside and
    /// outside SMX. Any other bit (SENTER, SGX, LMCE) is #GP (SDM Vol. 4 Table 2-2).
    public static let writableFeatureControl: FeatureControl = [.lock, .vmxInsideSMX, .vmxOutsideSMX]

    /// `lockedByFirmware`: IA32_FEATURE_CONTROL starts locked with VMX enabled
    /// outside SMX, as a BIOS leaves it; otherwise unlocked at zero.
    public init(capabilities: VMXCapabilities, lockedByFirmware: Bool = true) {
        self.capabilities = capabilities
        featureControl = lockedByFirmware ? [.lock, .vmxOutsideSMX] : []
    }

    public var currentPointer: UInt64 { current?.address ?? Self.invalidPointer }

    /// WRMSR IA32_FEATURE_CONTROL: #GP once locked, or for bits we do not
    /// implement (SDM Vol. 3C 24.7). False means #GP.
    public mutating func writeFeatureControl(_ value: UInt64) -> Bool {
        let new = FeatureControl(rawValue: value)
        guard !featureControl.contains(.lock), Self.writableFeatureControl.isSuperset(of: new) else { return false }
        featureControl = new
        return true
    }

    /// Reads a VMX MSR L0 emulates: feature control or a capability MSR.
    public func readMSR(_ index: UInt32) -> UInt64? {
        index == VMXMSR.featureControl ? featureControl.rawValue : capabilities.read(msr: index)
    }
}
