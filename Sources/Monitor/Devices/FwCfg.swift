/// QEMU's fw_cfg in its traditional port interface: a 16-bit selector at
/// 0x510 and a byte-wide data port at 0x511 (QEMU docs/specs/fw_cfg.rst).
/// No DMA interface: the ID item does not set bit 1.
public final class FwCfg: PortDevice {
    public static let ports: ClosedRange<UInt16> = 0x510...0x511
    public enum Key {
        public static let signature: UInt16 = 0x00
        public static let id: UInt16 = 0x01
        public static let ramSize: UInt16 = 0x03
        public static let nographic: UInt16 = 0x04
        public static let cpuCount: UInt16 = 0x05
        public static let maxCPUs: UInt16 = 0x0f
    }

    private var items: [UInt16: [UInt8]] = [:]
    private var selected: [UInt8] = []
    private var offset = 0

    public init(cpuCount: UInt16, ramSize: UInt64) {
        items[Key.signature] = Array("QEMU".utf8)
        items[Key.id] = le(UInt32(1))            // traditional interface only
        items[Key.ramSize] = le(ramSize)
        items[Key.nographic] = le(UInt16(1))
        items[Key.cpuCount] = le(cpuCount)
        items[Key.maxCPUs] = le(cpuCount)
    }

    private func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
        (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
    }

    public func read(port: UInt16, size: UInt8) -> UInt32 {
        guard port == 0x511 else { return 0 }   // the selector is write-only
        var value: UInt32 = 0
        for i in 0..<Int(size) {                 // past the item's end: zeros
            let b: UInt8 = offset < selected.count ? selected[offset] : 0
            offset += 1
            value |= UInt32(b) << (8 * UInt32(i))
        }
        return value
    }

    public func write(port: UInt16, size: UInt8, value: UInt32) -> DeviceEffect {
        if port == 0x510 {
            selected = items[UInt16(truncatingIfNeeded: value)] ?? []   // unknown key: reads zeros
            offset = 0
        }
        return .none                             // data-port writes are ignored, as in QEMU
    }
}
