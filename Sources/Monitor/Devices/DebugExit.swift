/// QEMU's isa-debug-exit: a write of `value` ends the run, and the monitor
/// process exits with status `(value << 1) | 1`.
public final class DebugExitDevice: PortDevice {
    public static let ports: ClosedRange<UInt16> = 0xf4...0xf7
    public init() {}
    public func read(port: UInt16, size: UInt8) -> UInt32 { 0xffff_ffff }
    public func write(port: UInt16, size: UInt8, value: UInt32) -> DeviceEffect {
        .stop(.guestExit(value: value))
    }
}

/// Port 0x80, the POST-code / I/O-delay port: keeps the last byte written.
public final class PostCodePort: PortDevice {
    public static let ports: ClosedRange<UInt16> = 0x80...0x80
    public private(set) var lastValue: UInt8 = 0
    public private(set) var writes = 0
    public init() {}
    public func read(port: UInt16, size: UInt8) -> UInt32 { UInt32(lastValue) }
    public func write(port: UInt16, size: UInt8, value: UInt32) -> DeviceEffect {
        lastValue = UInt8(truncatingIfNeeded: value)
        writes += 1
        return .none
    }
}

/// PCI configuration mechanism #1 with an empty bus: every configuration
/// read returns all ones, which is how "no device here" reads (PCI Local Bus
/// spec 3.0, 3.2.2.3.2). Writes are dropped.
public final class PCIConfigSpace: PortDevice {
    public static let ports: ClosedRange<UInt16> = 0xcf8...0xcff
    public private(set) var address: UInt32 = 0
    public init() {}
    public func read(port: UInt16, size: UInt8) -> UInt32 {
        if port == 0xcf8 && size == 4 { return address }
        return size == 4 ? 0xffff_ffff : (size == 2 ? 0xffff : 0xff)
    }
    public func write(port: UInt16, size: UInt8, value: UInt32) -> DeviceEffect {
        if port == 0xcf8 && size == 4 { address = value & 0x80ff_fffc }
        return .none
    }
}

/// The work-report port (Guests/lib/include/guest.h, `report_iterations`):
/// a guest says how many units of work it did, and the monitor records the
/// number as the trace's `iterations` metadata (Traces/README.md, "Keys
/// patched during the run"). A 32-bit write to 0x5a4 latches bits 63:32; a
/// 32-bit write to 0x5a0 gives bits 31:0 and commits the value, clearing
/// the latch. Other writes are dropped; reads return all ones (nothing to
/// read). L2's writes reach it too, when L1 does not intercept the port.
public final class WorkReportPort: PortDevice {
    public static let ports: ClosedRange<UInt16> = 0x5a0...0x5a7
    public static let lowPort: UInt16 = 0x5a0, highPort: UInt16 = 0x5a4
    /// The last committed count, nil until the guest reports one.
    public private(set) var iterations: UInt64?
    private var high: UInt32 = 0

    public init() {}
    public func read(port: UInt16, size: UInt8) -> UInt32 { size >= 4 ? .max : (1 << (8 * UInt32(size))) - 1 }
    public func write(port: UInt16, size: UInt8, value: UInt32) -> DeviceEffect {
        guard size == 4 else { return .none }
        switch port {
        case Self.highPort:
            high = value
        case Self.lowPort:
            let n = UInt64(high) << 32 | UInt64(value)
            high = 0
            iterations = n
        default: break
        }
        return .none
    }
}
