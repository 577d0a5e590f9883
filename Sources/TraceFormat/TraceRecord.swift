/// Layout constants of format version 1.
public enum TraceLayout {
    public static let magic: [UInt8] = Array("TRPNTRAC".utf8)
    /// The magic as the little-endian UInt64 found at offset 0.
    public static let magicValue: UInt64 = 0x4341_5254_4E50_5254
    public static let version: UInt16 = 1
    public static let recordSize = 64
    /// Bytes before the metadata text.
    public static let fixedHeaderSize = 40
    /// Record count of a file whose writer never finished.
    public static let unfinishedCount: UInt64 = .max
}

/// One 64-byte trace record. Field order and meaning follow Traces/README.md.
public struct TraceRecord: Equatable, Hashable, Sendable {
    /// ns since run start (CLOCK_MONOTONIC), taken when the exit reached L0.
    public var timestamp: UInt64
    /// ns L0 spent handling the exit, saturating at UInt32.max.
    public var duration: UInt32
    /// 1 = guest run directly by L0 (L1), 2 = L2, ...
    public var level: UInt8
    public var kind: ExitKind
    public var vcpu: UInt16
    public var rip: UInt64
    /// I/O port, guest-physical address or MSR index.
    public var address: UInt64
    /// Data written or read, or the exit qualification.
    public var value: UInt64
    /// 0 = not part of an episode. Reserved for nested exits.
    public var episode: UInt64
    /// VMX basic exit reason, `TraceRecord.noVMXReason` if none. Reserved for nested exits.
    public var vmxReason: UInt32
    public var handler: Handler
    /// Access size in bytes for I/O and MMIO, 0 otherwise.
    public var size: UInt8
    public var flags: RecordFlags

    public static let noVMXReason: UInt32 = 0xFFFF_FFFF

    @inlinable
    public init(
        timestamp: UInt64, duration: UInt32, level: UInt8 = 1, kind: ExitKind,
        vcpu: UInt16 = 0, rip: UInt64 = 0, address: UInt64 = 0, value: UInt64 = 0,
        episode: UInt64 = 0, vmxReason: UInt32 = 0xFFFF_FFFF, handler: Handler = .l0,
        size: UInt8 = 0, flags: RecordFlags = []
    ) {
        self.timestamp = timestamp
        self.duration = duration
        self.level = level
        self.kind = kind
        self.vcpu = vcpu
        self.rip = rip
        self.address = address
        self.value = value
        self.episode = episode
        self.vmxReason = vmxReason
        self.handler = handler
        self.size = size
        self.flags = flags
    }

    /// Saturating conversion for a measured duration.
    @inlinable @inline(__always)
    public static func clampDuration(_ ns: UInt64) -> UInt32 {
        ns > UInt64(UInt32.max) ? .max : UInt32(truncatingIfNeeded: ns)
    }

    /// Decodes 64 bytes at `p` (any alignment).
    @inlinable @inline(__always)
    public init(decoding p: UnsafeRawPointer) {
        timestamp = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        duration = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        level = p.load(fromByteOffset: 12, as: UInt8.self)
        kind = ExitKind(rawValue: p.load(fromByteOffset: 13, as: UInt8.self))
        vcpu = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
        rip = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        address = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        value = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 32, as: UInt64.self))
        episode = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 40, as: UInt64.self))
        vmxReason = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 48, as: UInt32.self))
        handler = Handler(rawValue: p.load(fromByteOffset: 52, as: UInt8.self))
        size = p.load(fromByteOffset: 53, as: UInt8.self)
        flags = RecordFlags(rawValue: p.load(fromByteOffset: 54, as: UInt8.self))
    }

    /// Encodes into 64 bytes at `p` (any alignment), zeroing the reserved bytes.
    @inlinable @inline(__always)
    public func encode(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: timestamp.littleEndian, toByteOffset: 0, as: UInt64.self)
        p.storeBytes(of: duration.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: level, toByteOffset: 12, as: UInt8.self)
        p.storeBytes(of: kind.rawValue, toByteOffset: 13, as: UInt8.self)
        p.storeBytes(of: vcpu.littleEndian, toByteOffset: 14, as: UInt16.self)
        p.storeBytes(of: rip.littleEndian, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: address.littleEndian, toByteOffset: 24, as: UInt64.self)
        p.storeBytes(of: value.littleEndian, toByteOffset: 32, as: UInt64.self)
        p.storeBytes(of: episode.littleEndian, toByteOffset: 40, as: UInt64.self)
        p.storeBytes(of: vmxReason.littleEndian, toByteOffset: 48, as: UInt32.self)
        p.storeBytes(of: handler.rawValue, toByteOffset: 52, as: UInt8.self)
        p.storeBytes(of: size, toByteOffset: 53, as: UInt8.self)
        p.storeBytes(of: flags.rawValue, toByteOffset: 54, as: UInt8.self)
        p.storeBytes(of: UInt8(0), toByteOffset: 55, as: UInt8.self)
        p.storeBytes(of: UInt64(0), toByteOffset: 56, as: UInt64.self)
    }
}
