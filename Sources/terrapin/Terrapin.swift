import ArgumentParser
import Monitor
#if canImport(Glibc)
import Glibc
#endif

@main
struct Terrapin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "terrapin",
        abstract: "A nested-virtualization research hypervisor on Linux KVM.",
        discussion: """
            terrapin boots Multiboot v1 guests (ELF32, ELF64 or a.out-kludge images, as QEMU's \
            -kernel does) on /dev/kvm and records every exit to a trace that terrapin-trace analyses. \
            Guests see an emulated Intel VMX, so a guest hypervisor (L1, such as Guests/turtle) can run \
            its own guests (L2), with EPT-on-EPT and exit reflection; traces then show every level.

            Exit status: odd values come from the guest's isa-debug-exit write (value << 1 | 1). \
            Even values are the monitor's: 64 bad flags, 66 image cannot be loaded, 70 host or KVM \
            failure, 80 triple fault, 82 halted with nothing to wake it, 84 unhandled exit, 86 L1 hit \
            a VMX abort, 88 stopped by SIGINT, SIGTERM or a closed output pipe (the trace is finished).
            """,
        subcommands: [Run.self, Experiment.self])

    /// No subcommand is a usage error like any other: the usage, and status 64.
    func run() throws {
        printError(Self.helpMessage())
        throw ExitCode(RunOutcome.usageStatus)
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Boot a Multiboot kernel and run it until it exits.",
        discussion: """
            The guest sees the command line "IMAGE-NAME ARGS". Devices: COM1 16550 at 0x3f8, \
            isa-debug-exit at 0xf4, PICs at 0x20/0xa0, port 0x80, fw_cfg at 0x510, PCI \
            configuration at 0xcf8 (no devices), and a local APIC at 0xfee00000.
            """)

    @Argument(help: "The kernel image (Multiboot v1).")
    var image: String

    @Option(name: .long, help: ArgumentHelp("Arguments passed on the guest's command line.", valueName: "args"))
    var append: String = ""

    @Option(name: .long, help: ArgumentHelp("A Multiboot module: \"FILE[ args]\"; the whole string is its command line. Repeatable.",
                                            valueName: "file"))
    var module: [String] = []

    @Option(name: .long, help: ArgumentHelp("Guest RAM: bytes or a K/M/G suffix, 2M to 3G.", valueName: "size"))
    var memory: String = "256M"

    @Option(name: .long, help: ArgumentHelp("Write an exit trace to this file.", valueName: "file"))
    var trace: String?

    @Option(name: .customLong("host-trace"), help: ArgumentHelp(
        "Capture KVM's trace events (kvm_exit, kvm_userspace_exit, kvm_pio, ...) of the run through tracefs into this file, as text for terrapin-trace align.",
        valueName: "file"))
    var hostTrace: String?

    @Option(name: .long, help: ArgumentHelp("Where the guest's serial output goes: stdio or a file.", valueName: "stdio|file"))
    var serial: String = "stdio"

    @Option(name: .customLong("vmx-trap"), help: ArgumentHelp(
        "How L1's VMX instructions reach L0: 'emulation' (KVM's emulation-failure exit, as on our hosts) or 'ud' (a #UD caught at L1's handler, as on a standard KVM host; forced here).",
        valueName: "emulation|ud"))
    var vmxTrap: String = "emulation"

    @Option(name: .customLong("feature-control"), help: ArgumentHelp(
        "IA32_FEATURE_CONTROL at reset: 'locked' (locked, VMX enabled outside SMX, as a BIOS leaves it) or 'unlocked' (0).",
        valueName: "locked|unlocked"))
    var featureControl: String = "locked"

    @Option(name: .customLong("ept02"), help: ArgumentHelp(
        "When L0 builds EPT02 from L1's EPT12: 'lazy' (a run when L2 first touches it) or 'eager' (all of EPT12 at the first entry after VMPTRLD or INVEPT).",
        valueName: "lazy|eager"))
    var ept02: String = "lazy"

    @Flag(name: .customLong("hyperv-evmcs"), help: ArgumentHelp(
        "Offer L1 Hyper-V's enlightened VMCS: the Hyper-V CPUID leaves 0x40000000-0x4000000A recommending it and the VP assist page MSR (docs/EVMCS.md). Off by default: it tells L1 it runs on Hyper-V."))
    var hypervEVMCS = false

    @Option(name: .customLong("l2-vmcall-trap"), help: ArgumentHelp(
        "How a VMCALL in code the sweep did not patch reaches L0 (swept sites are patched in every mode): 'handler' (INT3 on L2's #UD handler in L2's copy of its page, costing nothing until it is hit; the default), 'breakpoint' (a debug register on that handler, armed for the whole run) or 'patched' (none: such a VMCALL takes L2's own #UD; for measuring the other two).",
        valueName: "handler|breakpoint|patched"))
    var l2VMCALLTrap: String = "handler"

    @Option(name: .customLong("nested-debug-registers"), help: ArgumentHelp(
        "'shared' (the default): L1 and L2 share DR6 and switch DR7 as VMX has them, at the price of one KVM_GET_DEBUGREGS per VM entry and per reflected exit (about 9 µs each on kvm_pvm). 'unshared': an SDM deviation for measuring that price; each level keeps its own, and L2's DR7 is VMCS12's guest DR7 (docs/PERFORMANCE.md).",
        valueName: "shared|unshared"))
    var nestedDebugRegisters: String = "shared"

    func validate() throws {
        guard let size = MachineConfig.parseMemorySize(memory) else {
            throw ValidationError("--memory '\(memory)' is not a size such as 256M, 1G or 1048576")
        }
        guard size >= MachineConfig.minimumMemory, size <= MachineConfig.maximumMemory, size % 4096 == 0 else {
            throw ValidationError("--memory \(memory) must be a multiple of 4K between 2M and 3G")
        }
        guard !serial.isEmpty else { throw ValidationError("--serial needs 'stdio' or a file name") }
        guard VMXTrapChannel(rawValue: vmxTrap) != nil else {
            throw ValidationError("--vmx-trap '\(vmxTrap)' must be 'emulation' or 'ud'")
        }
        guard ["locked", "unlocked"].contains(featureControl) else {
            throw ValidationError("--feature-control '\(featureControl)' must be 'locked' or 'unlocked'")
        }
        guard EPT02Policy(rawValue: ept02) != nil else {
            throw ValidationError("--ept02 '\(ept02)' must be 'lazy' or 'eager'")
        }
        guard NestedDebugRegisters(rawValue: nestedDebugRegisters) != nil else {
            throw ValidationError("--nested-debug-registers '\(nestedDebugRegisters)' must be 'shared' or 'unshared'")
        }
        guard L2VMCALLTrap(rawValue: l2VMCALLTrap) != nil else {
            throw ValidationError("--l2-vmcall-trap '\(l2VMCALLTrap)' must be 'handler', 'breakpoint' or 'patched'")
        }
        if let trace, trace.isEmpty { throw ValidationError("--trace needs a file name") }
        if let hostTrace, hostTrace.isEmpty { throw ValidationError("--host-trace needs a file name") }
        if let hostTrace, hostTrace == trace { throw ValidationError("--host-trace and --trace must be different files") }
    }

    func run() throws {
        var config = MachineConfig(imagePath: image)
        config.arguments = append
        config.modules = module
        config.memorySize = MachineConfig.parseMemorySize(memory) ?? config.memorySize
        config.tracePath = trace
        config.serialPath = serial == "stdio" ? nil : serial
        config.invocation = CommandLine.arguments.joined(separator: " ")
        config.vmxTrapChannel = VMXTrapChannel(rawValue: vmxTrap) ?? .emulation
        config.featureControlUnlocked = featureControl == "unlocked"
        config.ept02Policy = EPT02Policy(rawValue: ept02) ?? .lazy
        config.hyperVEnlightenedVMCS = hypervEVMCS
        config.l2VMCALLTrap = L2VMCALLTrap(rawValue: l2VMCALLTrap) ?? .handler
        config.nestedDebugRegisters = NestedDebugRegisters(rawValue: nestedDebugRegisters) ?? .shared

        let outcome: RunOutcome
        do {
            let machine = try Machine(config: config)
            var hostTracer: HostTracer?
            if let hostTrace {
                let root = try HostTracer.root(override: getenv("TERRAPIN_TRACEFS").map { String(cString: $0) })
                hostTracer = try HostTracer(output: hostTrace, root: root)
                try hostTracer?.start()
            }
            outcome = try machine.run()
            if let lost = try hostTracer?.finish(), lost > 0 {
                printError("terrapin: warning: --host-trace lost \(lost) events (the tracefs buffer of "
                           + "\(HostTracer.bufferKiB) KiB per CPU overflowed); the oldest are missing")
            }
        } catch {
            printError("terrapin: error: \(error)")
            switch error {
            case .badImage: throw ExitCode(RunOutcome.badImageStatus)
            case .badConfig: throw ExitCode(RunOutcome.usageStatus)
            case .io, .kvm: throw ExitCode(RunOutcome.hostFailureStatus)
            }
        }
        throw ExitCode(outcome.exitStatus)
    }
}
