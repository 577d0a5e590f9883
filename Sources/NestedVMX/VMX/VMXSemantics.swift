import VMXArch

/// The VMX instructions executed by L1 in VMX root operation, following each
/// instruction's pseudo-code in SDM Vol. 3C 31.3 step by step. L1 is never in
/// VMX non-root operation here: that is L2, whose VMX instructions exit.
///
/// On success or VMfail the instruction retires: RFLAGS is set as 31.2 says
/// and RIP moves past it. On a fault nothing changes and the monitor injects
/// the exception at the instruction. `.vmEntry` leaves the state as it was.
public enum VMXSemantics {
    public static func execute(_ insn: DecodedInstruction, cpu: inout CPUState, vmx: inout VMXState,
                               memory: some GuestMemoryAccess) -> VMXExecution {
        // The context works on the caller's VMXState in place, through its
        // address: the cached VMCS and the entry-check memo stay unique
        // (VMWRITE updates them in place), and nothing is copied, retained
        // or released. Swapping it in and out, copying the context and
        // looking up a generic context's metadata were most of an emulated
        // VMREAD (docs/PERFORMANCE.md). The instruction works on a copy of
        // `cpu`, which it retires with; every path that faults does so
        // before it changes anything.
        var working = cpu
        let execution = withUnsafeMutablePointer(to: &vmx) { vmx in
            withUnsafeMutablePointer(to: &working) { working in
                Context(insn: insn, cpu: working, vmx: vmx, memory: memory).run()
            }
        }
        switch execution.result {
        case .succeed, .failInvalid, .failValid:
            cpu = working
            cpu.rip = cpu.wrappingRIP(cpu.rip &+ UInt64(insn.length))
            applyFlags(execution.result, cpu: &cpu, vmx: &vmx)
            // The VM-instruction error of an enlightened VMCS lives in its page.
            if case .failValid = execution.result, let c = vmx.current, c.isEnlightened,
               let slot = EnlightenedVMCS.slot(for: VMCSField.vmInstructionError) {
                _ = EnlightenedVMCS.write(slot, c.read(VMCSField.vmInstructionError) ?? 0, at: c.address, memory: memory)
            }
        case .fault, .vmEntry, .entryFailed:
            break
        }
        return execution
    }

    /// RFLAGS and the VM-instruction error field for VMsucceed / VMfail (SDM 31.2).
    static func applyFlags(_ result: VMXResult, cpu: inout CPUState, vmx: inout VMXState) {
        let arithmetic: UInt64 = 1 << 0 | 1 << 2 | 1 << 4 | 1 << 6 | 1 << 7 | 1 << 11   // CF PF AF ZF SF OF
        cpu.rflags &= ~arithmetic
        switch result {
        case .failInvalid: cpu.rflags |= 1 << 0
        case let .failValid(error):
            cpu.rflags |= 1 << 6
            vmx.current?.write(VMCSField.vmInstructionError, UInt64(error))
        default: break
        }
    }
}

/// One instruction's execution. Each path checks everything that can fault
/// before it changes any state, so a fault leaves the state as it was.
///
/// The states are the caller's, in place, so the context itself is
/// immutable and cheap to pass around; and it is not generic over the
/// memory, whose metadata a generic context looked up at every
/// instruction (the callers are not specialized).
struct Context {
    let insn: DecodedInstruction
    /// The state the instruction works on and the caller's VMXState, valid
    /// while `VMXSemantics.execute` runs.
    private let cpuAddress: UnsafeMutablePointer<CPUState>
    private let vmxAddress: UnsafeMutablePointer<VMXState>
    var cpu: CPUState {
        unsafeAddress { UnsafePointer(cpuAddress) }
        nonmutating unsafeMutableAddress { cpuAddress }
    }
    var vmx: VMXState {
        unsafeAddress { UnsafePointer(vmxAddress) }
        nonmutating unsafeMutableAddress { vmxAddress }
    }
    let memory: any GuestMemoryAccess
    typealias E = VMInstructionError

    init(insn: DecodedInstruction, cpu: UnsafeMutablePointer<CPUState>, vmx: UnsafeMutablePointer<VMXState>,
         memory: any GuestMemoryAccess) {
        self.insn = insn; self.cpuAddress = cpu; self.vmxAddress = vmx; self.memory = memory
    }

    func run() -> VMXExecution {
        let i = insn.instruction
        switch i {
        case .vmxon: return VMXExecution(i, vmxon())
        case .vmxoff: return VMXExecution(i, vmxoff())
        case .vmclear: return VMXExecution(i, vmclear())
        case .vmptrld: return VMXExecution(i, vmptrld())
        case .vmptrst: return VMXExecution(i, vmptrst())
        case .vmread: return vmread()
        case .vmwrite: return vmwrite()
        case .vmlaunch: return VMXExecution(i, vmentry(launch: true))
        case .vmresume: return VMXExecution(i, vmentry(launch: false))
        case .vmcall: return VMXExecution(i, vmcall())
        case .vmfunc: return VMXExecution(i, .fault(.invalidOpcode))   // #UD outside VMX non-root operation
        case .invept: return invept()
        case .invvpid: return invvpid()
        }
    }

    // MARK: Shared checks

    /// "IF (not in VMX operation) or (CR0.PE = 0) or (RFLAGS.VM = 1) or
    /// (IA32_EFER.LMA = 1 and CS.L = 0) THEN #UD; ... ELSIF CPL > 0 THEN #GP(0)".
    func rootOperationFault() -> VMXResult? {
        if !vmx.inVMXOperation || !cpu.protectedMode || cpu.virtual8086 || cpu.compatibilityMode { return .fault(.invalidOpcode) }
        if cpu.cpl > 0 { return .fault(.generalProtection()) }
        return nil
    }

    /// VMfail(n): VMfailValid when a VMCS is current, else VMfailInvalid.
    func fail(_ error: VMInstructionError) -> VMXResult { vmx.current == nil ? .failInvalid : .failValid(error.rawValue) }

    /// An address VMXON, VMCLEAR and VMPTRLD accept: 4 KiB aligned, within MAXPHYADDR.
    func isValidRegionAddress(_ a: UInt64) -> Bool {
        a & 0xfff == 0 && a >> UInt64(vmx.capabilities.physicalAddressBits) == 0
    }

    var operandSize: Int { cpu.mode64 ? 64 : 32 }

    func register(_ r: Int) -> UInt64 {
        operandSize == 64 ? cpu.gprs[r] : cpu.gprs[r] & 0xffff_ffff
    }

    // MARK: Memory operands

    private var access: MemoryAccess { MemoryAccess(write: false, user: cpu.cpl == 3, fetch: false) }

    /// Reads `size` bytes of the r/m memory operand. Operand bytes that are
    /// not RAM read as all ones, as unbacked memory does on this platform.
    func readOperand(size: Int) -> Result<[UInt8], X86Exception> {
        guard case let .memory(m)? = insn.rm else { return .failure(.invalidOpcode) }
        switch insn.linearAddress(m, state: cpu, size: size, write: false) {
        case let .failure(e): return .failure(e)
        case let .success(linear):
            switch PageWalker.readLinear(linear, count: size, access: access, state: cpu, memory: memory,
                                         physicalAddressBits: vmx.capabilities.physicalAddressBits) {
            case let .success(bytes): return .success(bytes)
            case let .failure(.fault(e)): return .failure(e)
            case .failure(.notRAM): return .success([UInt8](repeating: 0xff, count: size))
            }
        }
    }

    func readOperand64() -> Result<UInt64, X86Exception> {
        readOperand(size: 8).map { $0.littleEndian() }
    }

    /// Writes the r/m memory operand; writes to non-RAM are dropped.
    func writeOperand(_ value: UInt64, size: Int) -> X86Exception? {
        guard case let .memory(m)? = insn.rm else { return .invalidOpcode }
        switch insn.linearAddress(m, state: cpu, size: size, write: true) {
        case let .failure(e): return e
        case let .success(linear):
            let bytes = [UInt8](littleEndian: value, count: size)
            var writeAccess = access
            writeAccess.write = true
            switch PageWalker.writeLinear(linear, bytes: bytes, access: writeAccess, state: cpu, memory: memory,
                                          physicalAddressBits: vmx.capabilities.physicalAddressBits) {
            case .success, .failure(.notRAM): return nil
            case let .failure(.fault(e)): return e
            }
        }
    }

    // MARK: VMXON (SDM 31.3)

    func vmxon() -> VMXResult {
        if !cpu.protectedMode || !vmx.vmxe || cpu.virtual8086 || cpu.compatibilityMode { return .fault(.invalidOpcode) }
        if vmx.inVMXOperation {
            if cpu.cpl > 0 { return .fault(.generalProtection()) }
            return fail(.vmxonInVMXRoot)
        }
        // No A20M and no SMX on this platform. CR4 as L1 sees it includes the virtual VMXE.
        if cpu.cpl > 0 || !vmx.capabilities.permitsCR0(cpu.cr0) || !vmx.capabilities.permitsCR4(cpu.cr4 | 1 << 13)
            || !vmx.featureControl.contains([.lock, .vmxOutsideSMX]) {
            return .fault(.generalProtection())
        }
        let address: UInt64
        switch readOperand64() {
        case let .failure(e): return .fault(e)
        case let .success(a): address = a
        }
        guard isValidRegionAddress(address) else { return .failInvalid }
        // A region outside RAM cannot hold a revision identifier: VMfailInvalid.
        guard let revision = memory.load(UInt32.self, at: address),
              revision == VMXCapabilities.revisionID else { return .failInvalid }
        vmx.inVMXOperation = true
        vmx.vmxonPointer = address
        vmx.current = nil
        return .succeed
    }

    // MARK: VMXOFF

    func vmxoff() -> VMXResult {
        if let f = rootOperationFault() { return f }
        flushCurrent()
        vmx.inVMXOperation = false
        vmx.vmxonPointer = VMXState.invalidPointer
        vmx.current = nil
        return .succeed
    }

    /// Writes the cached VMCS back to L1 memory (SDM 25.11.1 allows any time).
    func flushCurrent() {
        if let c = vmx.current { _ = c.store(to: memory) }
    }

    // MARK: VMCLEAR

    func vmclear() -> VMXResult {
        if let f = rootOperationFault() { return f }
        let address: UInt64
        switch readOperand64() {
        case let .failure(e): return .fault(e)
        case let .success(a): address = a
        }
        guard isValidRegionAddress(address) else { return fail(.vmclearInvalidAddress) }
        guard address != vmx.vmxonPointer else { return fail(.vmclearWithVMXONPointer) }
        // An enlightened VMCS has no launch state: VMCLEAR makes it inactive
        // (TLFS "Enlightened VMCS") and writes nothing into its page, whose
        // offset 8 holds host selectors.
        if let c = vmx.current, c.isEnlightened, c.address == address {
            vmx.current = nil
            return .succeed
        }
        if vmx.hyperV.enlightenedVMCS(memory: memory) == address { return .succeed }
        if var c = vmx.current, c.address == address {
            c.launched = false
            _ = c.store(to: memory)
            vmx.current = nil
            return .succeed
        }
        // Not current: only the launch state lives in the region. Not RAM: treated
        // as an invalid physical address (a documented choice; see README).
        guard memory.store(UInt32(0), at: address + VMCS12Layout.launchStateOffset) else {
            return fail(.vmclearInvalidAddress)
        }
        return .succeed
    }

    // MARK: VMPTRLD

    func vmptrld() -> VMXResult {
        if let f = rootOperationFault() { return f }
        let address: UInt64
        switch readOperand64() {
        case let .failure(e): return .fault(e)
        case let .success(a): address = a
        }
        guard isValidRegionAddress(address) else { return fail(.vmptrldInvalidAddress) }
        guard address != vmx.vmxonPointer else { return fail(.vmptrldWithVMXONPointer) }
        guard let revision = memory.load(UInt32.self, at: address) else { return fail(.vmptrldInvalidAddress) }
        // Bit 31 (shadow VMCS) is refused: VMCS shadowing is not supported.
        guard revision == VMXCapabilities.revisionID else { return fail(.vmptrldIncorrectRevisionID) }
        if vmx.current?.address == address { return .succeed }   // keep the cache
        flushCurrent()
        guard let loaded = VMCS12(loadingFrom: address, memory: memory) else { return fail(.vmptrldInvalidAddress) }
        vmx.current = loaded
        return .succeed
    }

    // MARK: VMPTRST

    func vmptrst() -> VMXResult {
        if let f = rootOperationFault() { return f }
        if let e = writeOperand(vmx.currentPointer, size: 8) { return .fault(e) }
        return .succeed
    }

    // MARK: VMREAD

    /// The field a VMREAD/VMWRITE names: the register operand; in 64-bit mode
    /// bits 63:32 set mean "no such field", as does a field this processor
    /// does not support.
    func fieldOperand() -> VMCSField? {
        guard let r = insn.reg else { return nil }
        let v = register(r)
        guard v <= UInt64(UInt32.max) else { return nil }
        let field = VMCSField(rawValue: UInt32(v))
        return vmx.capabilities.supports(field) ? field : nil
    }

    func vmread() -> VMXExecution {
        if let f = rootOperationFault() { return VMXExecution(.vmread, f) }
        guard let current = vmx.current else { return VMXExecution(.vmread, .failInvalid) }
        let named = insn.reg.map { VMCSField(rawValue: UInt32(truncatingIfNeeded: register($0))) }
        guard let field = fieldOperand(), let raw = current.read(field) else {
            return VMXExecution(.vmread, .failValid(E.unsupportedVMCSComponent.rawValue), field: named)
        }
        // A field wider than the operand gives its low bits; narrower is zero-extended.
        let value = operandSize == 64 ? raw : raw & 0xffff_ffff
        switch insn.rm {
        case let .register(r)?:
            cpu.gprs[r] = value
        case .memory?:
            if let e = writeOperand(value, size: operandSize / 8) { return VMXExecution(.vmread, .fault(e), field: field) }
        case nil:
            return VMXExecution(.vmread, .fault(.invalidOpcode), field: field)
        }
        return VMXExecution(.vmread, .succeed, field: field)
    }

    // MARK: VMWRITE

    func vmwrite() -> VMXExecution {
        if let f = rootOperationFault() { return VMXExecution(.vmwrite, f) }
        guard vmx.current != nil else { return VMXExecution(.vmwrite, .failInvalid) }
        let named = insn.reg.map { VMCSField(rawValue: UInt32(truncatingIfNeeded: register($0))) }
        guard let field = fieldOperand() else { return VMXExecution(.vmwrite, .failValid(E.unsupportedVMCSComponent.rawValue), field: named) }
        // IA32_VMX_MISC bit 29 is not advertised: exit-information fields are read-only.
        if field.isReadOnly && vmx.capabilities.misc & (1 << 29) == 0 {
            return VMXExecution(.vmwrite, .failValid(E.vmwriteToReadOnlyComponent.rawValue), field: field)
        }
        let value: UInt64
        switch insn.rm {
        case let .register(r)?:
            value = register(r)
        case .memory?:
            switch readOperand(size: operandSize / 8) {
            case let .failure(e): return VMXExecution(.vmwrite, .fault(e), field: field)
            case let .success(bytes): value = bytes.littleEndian()
            }
        case nil:
            return VMXExecution(.vmwrite, .fault(.invalidOpcode), field: field)
        }
        vmx.current?.write(field, value)
        return VMXExecution(.vmwrite, .succeed, field: field)
    }

    // MARK: VMLAUNCH / VMRESUME, up to the launch-state checks

    func vmentry(launch: Bool) -> VMXResult {
        if let f = rootOperationFault() { return f }
        if let address = vmx.hyperV.enlightenedVMCS(memory: memory), let failure = loadEnlightened(address, launch: launch) {
            return failure
        }
        guard let current = vmx.current else { return .failInvalid }
        if cpu.blockingByMovSS { return .failValid(E.entryEventsBlockedByMovSS.rawValue) }
        // eVMCS v1 has no VMX-preemption timer value: the control is refused
        // as an invalid control field (VMfailValid 7), as KVM refuses it.
        if current.isEnlightened && current.pin.contains(.activatePreemptionTimer) {
            return .failValid(E.entryInvalidControlFields.rawValue)
        }
        // An enlightened VMCS has no launch state (TLFS; KVM skips the check too).
        if launch && current.launched && !current.isEnlightened { return .failValid(E.vmlaunchNonClearVMCS.rawValue) }
        if !launch && !current.launched && !current.isEnlightened { return .failValid(E.vmresumeNonLaunchedVMCS.rawValue) }
        // SDM 27.2-27.4: controls and host state fail as VMfailValid(7/8);
        // guest state and the MSR-load list fail as a VM exit.
        // 27.2.4 reads IA32_EFER.LMA of the processor executing VMLAUNCH: L1's.
        let platform = EntryPlatform(processorInIA32eMode: cpu.longModeActive,
                                     linearAddressBits: vmx.capabilities.linearAddressBits)
        let context = EntryContext(vmcs: current, capabilities: vmx.capabilities, memory: memory, launch: launch,
                                   platform: platform)
        if let failure = VMEntryChecker.check(context, memo: &vmx.entryChecks) {
            if let error = failure.vmInstructionError { return .failValid(error) }
            return .entryFailed(failure)
        }
        return .vmEntry(launch: launch)
    }

    /// Enlightened VM entry (TLFS "Enlightened VMCS"): the eVMCS at
    /// `address`, which the VP assist page names, becomes the current VMCS.
    /// The cached copy is reused and only the dirty groups are read, unless
    /// this is VMLAUNCH or another eVMCS than the cached one, which are read
    /// whole. An ordinary VMCS that was current is written back first. A
    /// bad address (unaligned, beyond MAXPHYADDR, not RAM, the VMXON region)
    /// or a version other than 1 is VMfailInvalid, as KVM answers it.
    func loadEnlightened(_ address: UInt64, launch: Bool) -> VMXResult? {
        guard EnlightenedVMCS.isValidAddress(address, physicalAddressBits: vmx.capabilities.physicalAddressBits,
                                             vmxon: vmx.vmxonPointer, memory: memory),
              memory.load(UInt32.self, at: address + EnlightenedVMCS.versionOffset) == EnlightenedVMCS.version
        else { return .failInvalid }
        let cached = vmx.current.flatMap { $0.isEnlightened && $0.address == address ? $0 : nil }
        var vmcs: VMCS12
        if let cached, !launch {
            vmcs = cached
        } else {
            flushCurrent()
            vmcs = VMCS12(enlightenedAt: address)
        }
        vmx.current = nil                              // keep `vmcs` unique while it is written
        guard EnlightenedVMCS.load(from: address, into: &vmcs, full: cached == nil || launch, memory: memory) else {
            return .failInvalid
        }
        vmcs.launched = !launch
        vmx.current = vmcs
        return nil
    }

    // MARK: VMCALL in VMX root operation

    func vmcall() -> VMXResult {
        if !vmx.inVMXOperation { return .fault(.invalidOpcode) }
        if cpu.virtual8086 || cpu.compatibilityMode { return .fault(.invalidOpcode) }
        if cpu.cpl > 0 { return .fault(.generalProtection()) }
        // No dual-monitor treatment (IA32_SMM_MONITOR_CTL[0] = 0).
        return fail(.vmcallInVMXRoot)
    }

    // MARK: INVEPT / INVVPID

    func invept() -> VMXExecution {
        if let f = rootOperationFault() { return VMXExecution(.invept, f) }
        let type = insn.reg.map(register) ?? .max
        guard vmx.capabilities.supportsINVEPT(type: type) else { return VMXExecution(.invept, fail(.invalidINVEPTINVVPIDOperand)) }
        let descriptor: [UInt8]
        switch readOperand(size: 16) {
        case let .failure(e): return VMXExecution(.invept, .fault(e))
        case let .success(d): descriptor = d
        }
        if type == 1 {
            let eptp = descriptor.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            guard isValidEPTP(eptp) else { return VMXExecution(.invept, fail(.invalidINVEPTINVVPIDOperand)) }
            return VMXExecution(.invept, .succeed, invalidation: .eptSingleContext(eptp: eptp))
        }
        return VMXExecution(.invept, .succeed, invalidation: .eptAllContexts)
    }

    /// EPTP checks (SDM 27.2.1.1): a supported memory type (UC 0 or WB 6), a
    /// 4-level walk, A/D only if advertised, reserved bits 11:7 and those at or
    /// above MAXPHYADDR clear.
    func isValidEPTP(_ eptp: UInt64) -> Bool {
        let cap = vmx.capabilities.eptVPIDCap
        let memoryType = eptp & 7
        guard (memoryType == 0 && cap & (1 << 8) != 0) || (memoryType == 6 && cap & (1 << 14) != 0) else { return false }
        guard (eptp >> 3) & 7 == 3 else { return false }
        if eptp & (1 << 6) != 0 && cap & (1 << 21) == 0 { return false }
        guard eptp & 0xf80 == 0 else { return false }
        return eptp >> UInt64(vmx.capabilities.physicalAddressBits) == 0
    }

    func invvpid() -> VMXExecution {
        if let f = rootOperationFault() { return VMXExecution(.invvpid, f) }
        let type = insn.reg.map(register) ?? .max
        guard vmx.capabilities.supportsINVVPID(type: type) else { return VMXExecution(.invvpid, fail(.invalidINVEPTINVVPIDOperand)) }
        let d: [UInt8]
        switch readOperand(size: 16) {
        case let .failure(e): return VMXExecution(.invvpid, .fault(e))
        case let .success(bytes): d = bytes
        }
        let low = d.littleEndian(at: 0, count: 8), address = d.littleEndian(at: 8, count: 8)
        let vpid = UInt16(truncatingIfNeeded: low)
        guard low >> 16 == 0 else { return VMXExecution(.invvpid, fail(.invalidINVEPTINVVPIDOperand)) }
        switch type {
        case 0:
            let canonical = UInt64(bitPattern: Int64(bitPattern: address << 16) >> 16) == address
            guard vpid != 0, canonical else { return VMXExecution(.invvpid, fail(.invalidINVEPTINVVPIDOperand)) }
            return VMXExecution(.invvpid, .succeed, invalidation: .vpidIndividualAddress(vpid: vpid, address: address))
        case 1, 3:
            guard vpid != 0 else { return VMXExecution(.invvpid, fail(.invalidINVEPTINVVPIDOperand)) }
            return VMXExecution(.invvpid, .succeed, invalidation: .vpidSingleContext(vpid: vpid, retainGlobals: type == 3))
        default:
            return VMXExecution(.invvpid, .succeed, invalidation: .vpidAllContexts)
        }
    }
}
