/// Why KVM_RUN returned, decoded from `kvm_run` with its data copied out, so
/// the value stays valid after the next KVM_RUN. Plain values: no allocation.
public enum VCPUExit: Sendable {
    case io(IOExit)
    case mmio(MMIOExit)
    case hlt
    case shutdown
    case rdmsr(MSRExit)
    case wrmsr(MSRExit)
    case debug(DebugExit)
    case internalError(InternalErrorExit)
    /// A signal (a kick) or `immediate_exit` made KVM_RUN return EINTR.
    case interrupted
    /// `request_interrupt_window` was set and the guest can now take one.
    case irqWindowOpen
    case failEntry(hardwareReason: UInt64, cpu: UInt32)
    case systemEvent(type: UInt32)
    case exception(vector: UInt32, errorCode: UInt32)
    /// Any other `KVM_EXIT_*` value.
    case unknown(reason: UInt32)
}

public enum IODirection: UInt8, Sendable {
    case input = 0
    case output = 1
}

public struct IOExit: Sendable, Equatable {
    public var port: UInt16
    /// Bytes per element: 1, 2 or 4.
    public var size: UInt8
    public var direction: IODirection
    /// Elements: above 1 for string I/O (INS/OUTS, possibly with REP).
    public var count: UInt32
    /// For output, the first element written (zero-extended).
    public var value: UInt32
    public init(port: UInt16, size: UInt8, direction: IODirection, count: UInt32 = 1, value: UInt32 = 0) {
        self.port = port; self.size = size; self.direction = direction; self.count = count; self.value = value
    }
}

public struct MMIOExit: Sendable, Equatable {
    public var address: UInt64
    /// 1 to 8 bytes.
    public var length: UInt8
    public var isWrite: Bool
    /// For writes, the bytes written, little-endian in the low `length` bytes.
    public var data: UInt64
    public init(address: UInt64, length: UInt8, isWrite: Bool, data: UInt64 = 0) {
        self.address = address; self.length = length; self.isWrite = isWrite; self.data = data
    }
}

public struct MSRExit: Sendable, Equatable {
    public var index: UInt32
    public var reason: MSRExitReasons.RawValue
    /// For WRMSR, the value written.
    public var data: UInt64
    public init(index: UInt32, reason: UInt64 = 0, data: UInt64 = 0) {
        self.index = index; self.reason = reason; self.data = data
    }
}

public struct DebugExit: Sendable, Equatable {
    public var exception: UInt32
    public var pc: UInt64
    public var dr6: UInt64
    public var dr7: UInt64
    public init(exception: UInt32, pc: UInt64, dr6: UInt64, dr7: UInt64) {
        self.exception = exception; self.pc = pc; self.dr6 = dr6; self.dr7 = dr7
    }
}

/// The x86 instruction bytes KVM reports with an emulation failure
/// (`KVM_INTERNAL_ERROR_EMULATION` with `KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES`).
public struct InstructionBytes: Sendable, Equatable {
    /// At most 15 valid bytes (the x86 instruction-length limit).
    public var count: Int
    public var storage: (UInt64, UInt64)
    public init(_ bytes: some Collection<UInt8>) {
        storage = (0, 0)
        count = min(bytes.count, 15)
        withUnsafeMutableBytes(of: &storage) { raw in
            for (i, b) in bytes.prefix(15).enumerated() { raw[i] = b }
        }
    }
    public subscript(i: Int) -> UInt8 {
        guard i >= 0, i < count else { return 0 }
        return Swift.withUnsafeBytes(of: storage) { $0[i] }
    }
    /// The valid bytes, copied in one go (a map over the subscript cost
    /// about 460 instructions at every trapped VMX instruction).
    public var array: [UInt8] {
        Swift.withUnsafeBytes(of: storage) { Array($0.prefix(max(0, min(count, 15)))) }
    }
    /// The valid bytes in place.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: storage) { try body(UnsafeRawBufferPointer(rebasing: $0.prefix(max(0, min(count, 15))))) }
    }
    public static func == (a: Self, b: Self) -> Bool { a.count == b.count && a.array == b.array }
}

public struct InternalErrorExit: Sendable, Equatable {
    /// `KVM_INTERNAL_ERROR_*`: 1 emulation, 2 simultaneous exceptions, 3 delivery event, 4 unexpected exit reason.
    public var suberror: UInt32
    /// The first words of `internal.data` (up to 4), for diagnostics.
    public var data: (UInt64, UInt64, UInt64, UInt64)
    public var dataCount: UInt32
    /// Present for emulation failures that carry the instruction bytes.
    public var instruction: InstructionBytes?
    public init(suberror: UInt32, data: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0), dataCount: UInt32 = 0,
                instruction: InstructionBytes? = nil) {
        self.suberror = suberror; self.data = data; self.dataCount = dataCount; self.instruction = instruction
    }
    public static let emulation: UInt32 = 1
    public static func == (a: Self, b: Self) -> Bool {
        a.suberror == b.suberror && a.dataCount == b.dataCount && a.instruction == b.instruction
            && a.data.0 == b.data.0 && a.data.1 == b.data.1 && a.data.2 == b.data.2 && a.data.3 == b.data.3
    }
}
