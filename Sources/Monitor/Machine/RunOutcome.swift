import Glibc
import TraceFormat

/// How a run ended, and the process exit status that reports it.
///
/// Guest-requested exits through isa-debug-exit always give an odd status,
/// `(value << 1) | 1`, as QEMU does; the monitor's own outcomes are even, so
/// the two never collide:
///
/// | status | meaning |
/// |---|---|
/// | odd | the guest wrote `(status - 1) / 2` to port 0xf4 |
/// | 64 | bad command-line flags |
/// | 66 | the image or a module cannot be loaded |
/// | 70 | host failure: `/dev/kvm`, memory, or the trace file |
/// | 80 | the guest triple-faulted (KVM_EXIT_SHUTDOWN) |
/// | 82 | the guest halted with nothing that could ever wake it |
/// | 84 | an exit the monitor does not handle (e.g. an emulation failure) |
/// | 86 | L1 hit a VMX abort (SDM 28.7): the indicator is in its VMCS region |
/// | 88 | stopped by SIGINT or SIGTERM, or by a broken output pipe (SIGPIPE) |
public enum RunOutcome: Equatable, Sendable {
    case guestExit(value: UInt32)
    case tripleFault
    case deadHalt(reason: String)
    case unhandledExit(String)
    /// A VM exit to L1 could not complete (SDM 28.7); `indicator` is the
    /// abort indicator, as L0 wrote it into L1's VMCS region.
    case vmxAbort(indicator: UInt32)
    /// The run was asked to stop by `signal`; the trace was finished.
    case stopped(signal: Int32)

    public static let usageStatus: Int32 = 64
    public static let badImageStatus: Int32 = 66
    public static let hostFailureStatus: Int32 = 70

    public var exitStatus: Int32 {
        switch self {
        case let .guestExit(value): return Int32(truncatingIfNeeded: ((value << 1) | 1) & 0xff)
        case .tripleFault: return 80
        case .deadHalt: return 82
        case .unhandledExit: return 84
        case .vmxAbort: return 86
        case .stopped: return 88
        }
    }

    public var description: String {
        switch self {
        case let .guestExit(value): return "guest exited with value \(value) (status \(exitStatus))"
        case .tripleFault: return "guest triple-faulted (status 80)"
        case let .deadHalt(reason): return "guest halted for good: \(reason) (status 82)"
        case let .unhandledExit(what): return "unhandled exit: \(what) (status 84)"
        case let .vmxAbort(indicator): return "L1 hit a VMX abort, indicator \(indicator) (SDM 28.7) (status 86)"
        case let .stopped(signal): return "stopped by \(Self.signalName(signal)); the trace is complete up to here (status 88)"
        }
    }

    static func signalName(_ signal: Int32) -> String {
        signal == SIGPIPE ? "SIGPIPE (an output pipe was closed)" : ExitKind.signalName(UInt64(signal))
    }
}
