#if canImport(Glibc)
import Glibc
#endif
import KVM
import NestedVMX
import TraceFormat
import VMXArch

/// A one-vCPU PC-like machine on KVM that boots a Multiboot kernel: RAM, the
/// platform devices, the userspace local APIC, and the trace.
public final class Machine {
    public let config: MachineConfig
    let hypervisor: any Hypervisor
    /// The host's CPUID, which L1's and L2's are derived from.
    let hostCPUID: [CPUIDEntry]
    public let memory: GuestMemory
    let vcpu: any VirtualCPU
    public let boot: BootInfo

    var ports = PortBus()
    var mmio = MMIOBus()
    public let apic: LocalAPIC
    let serialSink: SerialSink
    public let serial: Serial16550
    var trace: TraceWriter?
    /// What the guest reported as its unit of work, for the trace's `iterations`.
    let workReport = WorkReportPort()
    var hostTimer: HostTimer?
    /// Where the monitor reads time (a test may inject its own).
    let clock: any MonitorClock
    /// Monotonic ns when `run()` started: trace timestamps count from here.
    var runStart: UInt64 = 0

    /// L1's emulated VMX: virtual CR4.VMXE, feature control, VMX operation, VMCS12.
    public internal(set) var vmx: VMXState
    let vmxTrapChannel: VMXTrapChannel
    let ept02Policy: EPT02Policy
    /// How VMCALL in L2's unswept code reaches L0 (`MachineConfig`).
    let l2VMCALLTrap: L2VMCALLTrap
    /// Whether transitions move the debug registers (`MachineConfig`).
    let nestedDebugRegisters: NestedDebugRegisters
    /// Channel (b) on L1's vCPU: #GP (CR4.VMXE) and #UD (VMX instructions).
    let l1Breakpoints: BreakpointChannel
    /// L1 has touched a VMX MSR: channel (b)'s breakpoints are worth their cost.
    var vmxBreakpointsWanted = false
    /// The VM that runs L2, created at the first VM entry and reused.
    var l2Machine: L2Machine?
    /// Which level runs next.
    var running: Running = .l1
    /// 1 or 2, for the trace.
    var activeLevel: Int { if case .l2 = running { 2 } else { 1 } }
    /// Exit episodes: a reflected L2 exit and L1's exits until it re-enters L2.
    var episodeCounter: UInt64 = 0
    var currentEpisode: UInt64 = 0
    /// The CR4 bits the vCPU accepts (from CPUID), VMXE aside.
    let cr4Supported: UInt64
    let ram: GuestRAM
    /// The sensitive instructions of the kernel and the modules, which L0
    /// patches in L2's view of their pages (docs/PATCHING.md).
    let patches: PatchTable

    /// MSRs L0 emulates; the KVM MSR filter sends their accesses here.
    static let emulatedMSRs: [ClosedRange<UInt32>] = [
        MSRIndex.apicBase...MSRIndex.apicBase,
        VMXMSR.featureControl...VMXMSR.featureControl,
        VMXMSR.capabilityRange,
        HyperV.msrRange,
    ]

    /// The MSRs a VM exit loads from VMCS12's host-state area (SDM 28.5.1):
    /// SYSENTER_CS/ESP/EIP, DEBUGCTL and PAT. L1's writes to them exit to
    /// L0, which makes them and remembers the values (`l1MSRs`), so a VM
    /// exit writes only those that differ.
    static let hostStateMSRs: [ClosedRange<UInt32>] = [
        GuestStateMSRs.sysenterCS...GuestStateMSRs.sysenterEIP,
        GuestStateMSRs.debugctl...GuestStateMSRs.debugctl,
        GuestStateMSRs.pat...GuestStateMSRs.pat,
    ]
    /// The values of `hostStateMSRs` L0 knows L1's vCPU holds: what L0 wrote,
    /// at a VM exit or for L1's WRMSR. Unknown ones are absent.
    var l1MSRs = MSRValues()
    /// L1's and L2's special registers as `CPUState` fields, converted once
    /// per change (`cpuState`, `l2State`).
    var l1Special = SpecialStateCache()
    var l2Special = SpecialStateCache()

    /// Builds the VM and loads the image. Errors name what failed.
    ///
    /// `hypervisor` is KVM unless a test brings its own.
    public init(config: MachineConfig, clock: any MonitorClock = HostClock(),
                hypervisor hypervisorIfAny: (any Hypervisor)? = nil) throws(MonitorError) {
        try config.validate()
        self.config = config
        self.clock = clock
        let image = try Self.readFile(config.imagePath)
        var modules: [BootModule] = []
        for spec in config.modules {
            modules.append(BootModule(bytes: try Self.readFile(MachineConfig.modulePath(spec)), commandLine: spec))
        }
        do {
            if let given = hypervisorIfAny { hypervisor = given } else { hypervisor = try KVMHypervisor() }
            memory = try GuestMemory(size: config.memorySize)
            let cpuid = try hypervisor.supportedCPUID()
            hostCPUID = cpuid
            let l1CPUID = Self.guestCPUID(cpuid, vmx: true, hyperV: config.hyperVEnlightenedVMCS)
            vcpu = try hypervisor.makeL1(memory: memory, cpuid: l1CPUID, deniedMSRs: Self.emulatedMSRs,
                                         writeTrackedMSRs: Self.hostStateMSRs)
            l1Breakpoints = BreakpointChannel(vcpu: vcpu, vectors: [IDTBreakpoints.gpVector, IDTBreakpoints.udVector])
            cr4Supported = try hypervisor.acceptedCR4(cpuid: l1CPUID)
            var capabilities = VMXCapabilities.terrapin(physicalAddressBits: Self.physicalAddressBits(cpuid),
                                                        cr4Fixed1: cr4Supported)
            capabilities.linearAddressBits = Self.linearAddressBits(cpuid)
            vmx = VMXState(capabilities: capabilities, lockedByFirmware: !config.featureControlUnlocked)
            vmx.hyperV = HyperVState(offered: config.hyperVEnlightenedVMCS)
        } catch {
            throw MonitorError(error)
        }
        vmxTrapChannel = config.vmxTrapChannel
        ept02Policy = config.ept02Policy
        l2VMCALLTrap = config.l2VMCALLTrap
        nestedDebugRegisters = config.nestedDebugRegisters
        ram = GuestRAM(memory: memory)
        boot = try MultibootLoader.load(image: image, path: config.imagePath, commandLine: config.guestCommandLine,
                                        modules: modules, into: memory)
        patches = PatchTable(sweeping: [image] + modules.map(\.bytes))
        apic = LocalAPIC(now: { [clock] in clock.now() })
        serialSink = try config.serialPath.map { (p) throws(MonitorError) in try SerialSink(path: p) } ?? SerialSink(fd: 1)
        serial = Serial16550(sink: serialSink)
        try registerDevices()
        enterProtectedMode()
        do throws(TraceError) {
            if let path = config.tracePath {
                trace = try TraceWriter(path: path, metadata: TraceRecorder.metadata(config: config))
            }
        } catch {
            throw .io("trace: \(error)", errno: 0)
        }
    }

    /// The host timer goes first: its kicker points into the vCPU's `kvm_run`.
    deinit {
        hostTimer = nil
        l2Machine = nil
    }

    static func readFile(_ path: String) throws(MonitorError) -> [UInt8] {
        // O_NONBLOCK: a FIFO must not block the open; it is refused below.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .badImage(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .badImage(path: path, reason: String(cString: strerror(errno))) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .badImage(path: path, reason: "not a regular file") }
        guard st.st_size > 0 else { throw .badImage(path: path, reason: "empty file") }
        guard st.st_size <= Int(MachineConfig.maximumMemory) else { throw .badImage(path: path, reason: "larger than any guest RAM") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .badImage(path: path, reason: "read failed at byte \(done)") }
            done += n
        }
        return bytes
    }

    /// The one place that edits CPUID. A guest gets KVM's supported CPUID,
    /// minus what this platform does not emulate (the APIC timer's
    /// TSC-deadline mode and x2APIC, CPUID.1:ECX bits 24 and 21), with initial
    /// APIC ID 0, and with VMX (CPUID.1:ECX bit 5, SDM Vol. 3C 24.6) only
    /// where L0 emulates it: for L1, not for L2 (no L3 yet). With `hyperV`
    /// the hypervisor leaves 0x40000000-0x400000FF are Hyper-V's
    /// (`HyperV.leaves`, docs/EVMCS.md) instead of KVM's, and CPUID.1:ECX
    /// bit 31, "hypervisor present", which the TLFS requires before those
    /// leaves are read, is set.
    static func guestCPUID(_ supported: [CPUIDEntry], vmx: Bool, hyperV: Bool = false) -> [CPUIDEntry] {
        var entries = supported.compactMap { e -> CPUIDEntry? in
            var e = e
            if hyperV && HyperV.msrRange.contains(e.function) { return nil }   // the same numbers: 0x40000000-FF
            if e.function == 1 {
                e.ecx &= ~(UInt32(1) << 24 | UInt32(1) << 21 | UInt32(1) << 5)
                if vmx { e.ecx |= 1 << 5 }
                if hyperV { e.ecx |= 1 << 31 }
                e.ebx &= 0x00ff_ffff
            }
            return e
        }
        if hyperV {
            entries += HyperV.leaves.map { CPUIDEntry(function: $0.function, eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx) }
        }
        return entries
    }

    /// MAXPHYADDR: CPUID.80000008H:EAX[7:0], 36 if the leaf is missing.
    static func physicalAddressBits(_ cpuid: [CPUIDEntry]) -> Int {
        cpuid.first { $0.function == 0x8000_0008 }.map { Int($0.eax & 0xff) } ?? 36
    }

    /// The linear-address width: CPUID.80000008H:EAX[15:8], 48 if the leaf
    /// is missing or says less (SDM Vol. 3A 4.1.4).
    static func linearAddressBits(_ cpuid: [CPUIDEntry]) -> Int {
        let bits = cpuid.first { $0.function == 0x8000_0008 }.map { Int($0.eax >> 8 & 0xff) } ?? 48
        return bits == 57 ? 57 : 48
    }

    private func registerDevices() throws(MonitorError) {
        do {
            try ports.register(serial, ports: Serial16550.com1)
            try ports.register(DebugExitDevice(), ports: DebugExitDevice.ports)
            try ports.register(PIC8259(base: 0x20), ports: PIC8259.master)
            try ports.register(PIC8259(base: 0xa0), ports: PIC8259.slave)
            try ports.register(PostCodePort(), ports: PostCodePort.ports)
            try ports.register(FwCfg(cpuCount: 1, ramSize: UInt64(config.memorySize)), ports: FwCfg.ports)
            try ports.register(PCIConfigSpace(), ports: PCIConfigSpace.ports)
            try ports.register(workReport, ports: WorkReportPort.ports)
            try mmio.register(apic, base: LocalAPIC.defaultBase, size: 0x1000)
        } catch {
            throw .badConfig("device registration: \(error)")
        }
    }

    /// The CPU state the Multiboot specification (section 3.2) promises:
    /// 32-bit protected mode, flat 4 GiB segments, paging off, IF clear,
    /// EAX = 0x2BADB002 and EBX = the boot information.
    private func enterProtectedMode() {
        var s = vcpu.specialRegisters
        func flat(_ selector: UInt16, type: UInt8) -> Segment {
            Segment(base: 0, limit: 0xffff_ffff, selector: selector, type: type, present: true, dpl: 0, db: true, s: true,
                    l: false, g: true)
        }
        s.cs = flat(0x10, type: 0xb)                  // execute/read, accessed
        s.ds = flat(0x18, type: 0x3); s.es = s.ds; s.fs = s.ds; s.gs = s.ds; s.ss = s.ds
        s.cr0 = 0x11                                   // PE | ET
        s.cr4 = 0; s.efer = 0
        s.apicBase = apic.baseMSR
        vcpu.specialRegisters = s
        var r = Registers()
        r.rip = UInt64(boot.entry)
        r.rax = UInt64(MultibootHeader.bootloaderMagic)
        r.rbx = UInt64(boot.infoAddress)
        r.rflags = 0x2
        vcpu.registers = r
    }
}

/// The level that runs next: L1 on its vCPU, or L2 on the L2 VM. The L2 VM
/// outlives L2's runs (one is created and reused), so `Machine.l2Machine`
/// keeps it while L1 runs.
enum Running {
    case l1
    case l2(L2Machine)
}

/// MSR numbers L0 handles itself (Intel SDM Vol. 4, chapter 2). The VMX
/// MSRs (IA32_FEATURE_CONTROL and the capability MSRs) are named once, in
/// VMXArch's `VMXMSR`.
public enum MSRIndex {
    public static let tsc: UInt32 = 0x10
    public static let apicBase: UInt32 = 0x1b
    public static let tscAux: UInt32 = 0xc000_0103
}
