/// What a device write asks of the machine.
public enum DeviceEffect: Equatable, Sendable {
    case none
    /// The guest asked to end the run (isa-debug-exit).
    case stop(RunOutcome)
}

/// A device on the I/O port bus. `port` is absolute; `size` is 1, 2 or 4.
public protocol PortDevice: AnyObject {
    func read(port: UInt16, size: UInt8) -> UInt32
    func write(port: UInt16, size: UInt8, value: UInt32) -> DeviceEffect
}

/// A device on the memory bus. `offset` is relative to the device's base.
public protocol MMIODevice: AnyObject {
    func read(offset: UInt64, size: UInt8) -> UInt64
    func write(offset: UInt64, size: UInt8, value: UInt64) -> DeviceEffect
}

/// Devices register their port ranges here, explicitly, at machine set-up.
/// Lookup is one table index: the per-exit path does no search.
public struct PortBus {
    private var devices: [any PortDevice] = []
    /// For every port, 0 (unclaimed) or 1 + index into `devices`.
    private var owner = [UInt8](repeating: 0, count: 65536)

    public init() {}

    public enum RegistrationError: Error, Equatable { case overlap(port: UInt16), full }

    public mutating func register(_ device: any PortDevice, ports: ClosedRange<UInt16>) throws(RegistrationError) {
        if let taken = ports.first(where: { owner[Int($0)] != 0 }) { throw .overlap(port: taken) }
        guard devices.count < 255 else { throw .full }
        devices.append(device)
        for p in ports { owner[Int(p)] = UInt8(devices.count) }
    }

    @inline(__always)
    public func device(at port: UInt16) -> (any PortDevice)? {
        let i = Int(owner[Int(port)])
        return i == 0 ? nil : devices[i - 1]
    }
}

/// MMIO regions; a handful of ranges, searched linearly.
public struct MMIOBus {
    public struct Region {
        public var base: UInt64
        public var size: UInt64
        public var device: any MMIODevice
    }
    public private(set) var regions: [Region] = []

    public init() {}

    public enum RegistrationError: Error, Equatable { case overlap(base: UInt64) }

    public mutating func register(_ device: any MMIODevice, base: UInt64, size: UInt64) throws(RegistrationError) {
        for r in regions where base < r.base &+ r.size && r.base < base &+ size { throw .overlap(base: base) }
        regions.append(Region(base: base, size: size, device: device))
    }

    /// The device covering `address` and the offset into it.
    @inline(__always)
    public func device(at address: UInt64) -> (device: any MMIODevice, offset: UInt64)? {
        for r in regions where address >= r.base && address - r.base < r.size {
            return (r.device, address - r.base)
        }
        return nil
    }
}
