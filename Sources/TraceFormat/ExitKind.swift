// Small value types that appear in a trace record. All are open sets over
// their raw byte: a reader must be able to carry values it does not know
// (newer writers, corrupt files) without failing per record.

/// What caused a record: an exit kind, or an event L0 recorded (interrupt-injected).
public struct ExitKind: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8

    @inlinable @inline(__always)
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    // Computed rather than `static let` so cross-module use on the exit path
    // folds to a constant instead of a lazy-global access.
    @inlinable public static var ioIn: ExitKind { ExitKind(rawValue: 1) }
    @inlinable public static var ioOut: ExitKind { ExitKind(rawValue: 2) }
    @inlinable public static var mmioRead: ExitKind { ExitKind(rawValue: 3) }
    @inlinable public static var mmioWrite: ExitKind { ExitKind(rawValue: 4) }
    @inlinable public static var hlt: ExitKind { ExitKind(rawValue: 5) }
    @inlinable public static var shutdown: ExitKind { ExitKind(rawValue: 6) }
    @inlinable public static var rdmsr: ExitKind { ExitKind(rawValue: 7) }
    @inlinable public static var wrmsr: ExitKind { ExitKind(rawValue: 8) }
    @inlinable public static var debug: ExitKind { ExitKind(rawValue: 9) }
    @inlinable public static var internalError: ExitKind { ExitKind(rawValue: 10) }
    /// The vCPU was kicked out of KVM_RUN (signal / immediate_exit).
    @inlinable public static var interrupted: ExitKind { ExitKind(rawValue: 11) }
    @inlinable public static var irqWindow: ExitKind { ExitKind(rawValue: 12) }
    @inlinable public static var failEntry: ExitKind { ExitKind(rawValue: 13) }
    @inlinable public static var systemEvent: ExitKind { ExitKind(rawValue: 14) }
    /// Not an exit: L0 injected an interrupt into the guest.
    @inlinable public static var interruptInjected: ExitKind { ExitKind(rawValue: 15) }
    @inlinable public static var unknownExit: ExitKind { ExitKind(rawValue: 16) }
    /// Not an exit: the run was stopped by a signal (SIGINT, SIGTERM or
    /// SIGPIPE), whose number is the record's address. The last record.
    @inlinable public static var stopped: ExitKind { ExitKind(rawValue: 17) }
    /// An exit KVM handled inside the host kernel, which L0 never saw:
    /// merged from a host trace by `terrapin-trace align` (handler `kernel`).
    @inlinable public static var kernelExit: ExitKind { ExitKind(rawValue: 18) }

    /// Every kind defined by format version 1, in code order.
    public static let allKnown: [ExitKind] = (1...18).map { ExitKind(rawValue: $0) }

    /// Stable lowercase name; values this version does not define print as "kind-N".
    public var name: String {
        switch rawValue {
        case 1: "io-in"
        case 2: "io-out"
        case 3: "mmio-read"
        case 4: "mmio-write"
        case 5: "hlt"
        case 6: "shutdown"
        case 7: "rdmsr"
        case 8: "wrmsr"
        case 9: "debug"
        case 10: "internal-error"
        case 11: "interrupted"
        case 12: "irq-window"
        case 13: "fail-entry"
        case 14: "system-event"
        case 15: "interrupt-injected"
        case 16: "unknown-exit"
        case 17: "stopped"
        case 18: "kernel-exit"
        default: "kind-\(rawValue)"
        }
    }

    /// True for records that are events rather than exits (not counted in exits/s).
    @inlinable public var isEvent: Bool { rawValue == 15 || rawValue == 17 }
}

extension ExitKind {
    /// The name of the signal in a `stopped` record's address.
    public static func signalName(_ number: UInt64) -> String {
        switch number {
        case 2: "SIGINT"
        case 13: "SIGPIPE"
        case 15: "SIGTERM"
        default: "signal \(number)"
        }
    }
}

extension ExitKind: CustomStringConvertible {
    public var description: String { name }
}

/// Who handled an exit. A struct, not an enum, so bytes other than 0/1 in a
/// file still decode (they print as "handler-N").
public struct Handler: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8

    @inlinable @inline(__always)
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Handled by L0 (Terrapin itself).
    @inlinable public static var l0: Handler { Handler(rawValue: 0) }
    /// Reflected to the L1 hypervisor.
    @inlinable public static var reflected: Handler { Handler(rawValue: 1) }
    /// Handled by KVM in the host kernel (records merged by `align`).
    @inlinable public static var kernel: Handler { Handler(rawValue: 2) }

    public var name: String {
        switch rawValue {
        case 0: "l0"
        case 1: "reflected"
        case 2: "kernel"
        default: "handler-\(rawValue)"
        }
    }
}

extension Handler: CustomStringConvertible {
    public var description: String { name }
}

/// Per-record flag bits.
public struct RecordFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8

    @inlinable @inline(__always)
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// No device claimed the port or address.
    @inlinable public static var unclaimed: RecordFlags { RecordFlags(rawValue: 1 << 0) }
    /// String I/O (INS/OUTS).
    @inlinable public static var string: RecordFlags { RecordFlags(rawValue: 1 << 1) }
    /// The access failed or faulted (e.g. an MSR access that injected #GP).
    @inlinable public static var faulted: RecordFlags { RecordFlags(rawValue: 1 << 2) }
    /// An L2 access that missed EPT02 and that L0 resolved itself by mapping
    /// the EPT12 run behind it (not reflected to L1).
    @inlinable public static var ept02Fault: RecordFlags { RecordFlags(rawValue: 1 << 3) }
    /// L2 reached L0 at a sensitive instruction through L0's patch of its
    /// code page (docs/PATCHING.md).
    @inlinable public static var patchedSite: RecordFlags { RecordFlags(rawValue: 1 << 4) }
}
