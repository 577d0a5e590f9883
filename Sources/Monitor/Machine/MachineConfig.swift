import TraceFormat

/// How L2's VMCALL outside swept code reaches L0. VMCALL exits
/// unconditionally in VMX non-root operation (SDM Vol. 3C 26.1.2); KVM
/// turns it into a #UD in L2, so L0 catches it at L2's #UD handler.
/// Swept VMCALL sites are patched in every mode.
public enum L2VMCALLTrap: String, Sendable, CaseIterable {
    /// INT3 over the first byte of L2's #UD handler, in L2's copy of its
    /// page: nothing armed while L2 runs no #UD. Falls back to `breakpoint`
    /// where no copy can hold it (L2 wrote to the page, L1 intercepts #UD,
    /// the monitor trap flag is on, or the handler may run above CPL 0).
    case handler
    /// A debug-register breakpoint on L2's #UD handler, armed for the whole
    /// run (about 5% on L2's compute, docs/PERFORMANCE.md).
    case breakpoint
    /// The swept sites only: a VMCALL elsewhere reaches L2's own #UD handler
    /// (an SDM deviation, for measuring what the other two cost).
    case patched
}

/// Whether L0 moves the debug registers between L1 and L2 at VM entry and
/// exit. VMX shares DR6 (and DR0-DR3, which L0 does not move: each level
/// keeps its own) between the levels and switches DR7 (SDM Vol. 3C
/// 27.3.2.1, 28.3.1, 28.5.1); L1 and L2 are two vCPUs here,
/// and a guest's MOV DR never reaches L0 on this backend, so L0 can only
/// read them back with an ioctl, which costs about 9 µs on `kvm_pvm`
/// (docs/PERFORMANCE.md).
public enum NestedDebugRegisters: String, Sendable, CaseIterable {
    /// As the SDM has it: one `KVM_GET_DEBUGREGS` at each VMRESUME (L1's)
    /// and each reflected exit (L2's).
    case shared
    /// A measured deviation: each level keeps its own DR6, and no
    /// transition reads a vCPU's debug registers. L2's DR7 is VMCS12's
    /// guest DR7 under "load debug controls" (written when it changes), and
    /// the exit saves that value back; L1's DR7 is left as L1 has it.
    case unshared
}

/// Everything `terrapin run` needs to build a machine.
public struct MachineConfig: Sendable {
    public var imagePath: String
    /// The user's arguments; the guest sees "image-name arguments".
    public var arguments: String = ""
    /// Each "FILE[ args]": the file is loaded, the whole string is the module's command line.
    public var modules: [String] = []
    public var memorySize: Int = 256 << 20
    public var tracePath: String?
    /// nil: standard output.
    public var serialPath: String?
    /// The monitor's own command line, recorded in the trace.
    public var invocation: String = ""
    /// IA32_FEATURE_CONTROL starts unlocked at 0 instead of locked with VMX on.
    public var featureControlUnlocked = false
    /// How L1's VMX instructions reach L0.
    public var vmxTrapChannel: VMXTrapChannel = .emulation
    /// When L0 builds EPT02 from L1's EPT12.
    public var ept02Policy: EPT02Policy = .lazy
    /// Offer Hyper-V's enlightened VMCS to L1 (`--hyperv-evmcs`): the
    /// Hyper-V CPUID leaves and the VP assist page MSR (docs/EVMCS.md).
    public var hyperVEnlightenedVMCS = false
    /// How VMCALL in code the sweep did not patch reaches L0
    /// (`--l2-vmcall-trap`, docs/PATCHING.md "VMCALL in unswept code").
    public var l2VMCALLTrap: L2VMCALLTrap = .handler
    /// `--nested-debug-registers`: the SDM's sharing, or none (to measure it).
    public var nestedDebugRegisters: NestedDebugRegisters = .shared

    public init(imagePath: String) { self.imagePath = imagePath }

    public static let minimumMemory = 2 << 20
    /// RAM ends below the MMIO hole (3 GiB), where the APIC and unbacked test addresses live.
    public static let maximumMemory = 3 << 30

    /// Parses sizes like "256M", "1G", "65536K" or a byte count.
    public static func parseMemorySize(_ text: String) -> Int? {
        guard let last = text.last else { return nil }
        let units: [Character: Int] = ["K": 10, "k": 10, "M": 20, "m": 20, "G": 30, "g": 30]
        let (digits, shift) = units[last].map { (String(text.dropLast()), $0) } ?? (text, 0)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(digits), n > 0,
              n <= Int.max >> shift else { return nil }
        return n << shift
    }

    /// The command line the guest sees: the image's file name, then the arguments.
    public var guestCommandLine: String {
        let name = imagePath.split(separator: "/").last.map(String.init) ?? imagePath
        return arguments.isEmpty ? name : "\(name) \(arguments)"
    }

    public func validate() throws(MonitorError) {
        guard memorySize >= Self.minimumMemory, memorySize <= Self.maximumMemory, memorySize % 4096 == 0 else {
            throw .badConfig("memory size \(memorySize) bytes is not a multiple of 4 KiB between 2 MiB and 3 GiB")
        }
        try checkOutputs()
    }

    /// The file of a module given as "FILE[ args]".
    public static func modulePath(_ spec: String) -> String {
        String(spec.split(separator: " ", maxSplits: 1).first ?? "")
    }

    /// The files the run reads: the image and each module's file.
    public var inputPaths: [String] { [imagePath] + modules.map(Self.modulePath) }

    /// No output may be an input of the run, and the trace and the serial
    /// output may not be one file: each would destroy the other. Compared
    /// by device and inode (`FileIdentity`), so other names of a file count.
    func checkOutputs() throws(MonitorError) {
        let outputs = [("--trace", tracePath), ("--serial", serialPath)].compactMap { name, path in path.map { (name, $0) } }
        for (name, path) in outputs {
            if let input = FileIdentity.clash(output: path, inputs: inputPaths) {
                throw .badConfig("\(name) \(path) is an input of this run (\(input)); refusing to overwrite it")
            }
        }
        if let trace = tracePath, let serial = serialPath, FileIdentity.clash(output: trace, inputs: [serial]) != nil {
            throw .badConfig("--trace \(trace) and --serial \(serial) are the same file")
        }
    }
}
