import VMXArch

/// The VM-execution, VM-exit and VM-entry controls of a VMCS12 as their
/// VMXArch option sets (SDM Vol. 3C 25.6-25.8); a field the VMCS does not
/// hold reads as 0.
extension VMCS12 {
    private func controls(_ field: VMCSField) -> UInt32 { UInt32(truncatingIfNeeded: read(field) ?? 0) }

    public var pin: PinBasedControls { PinBasedControls(rawValue: controls(.pinBasedControls)) }
    public var proc: ProcessorBasedControls { ProcessorBasedControls(rawValue: controls(.processorBasedControls)) }
    /// The secondary controls in effect: none when "activate secondary
    /// controls" is 0 (SDM 25.6.2).
    public var proc2: SecondaryProcessorBasedControls {
        proc.contains(.activateSecondaryControls)
            ? SecondaryProcessorBasedControls(rawValue: controls(.secondaryProcessorBasedControls)) : []
    }
    public var exitControls: VMExitControls { VMExitControls(rawValue: controls(.exitControls)) }
    public var entryControls: VMEntryControls { VMEntryControls(rawValue: controls(.entryControls)) }
}
