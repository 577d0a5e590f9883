/// Guest-physical memory as the core sees it. The monitor implements this
/// over KVM guest RAM; tests implement it over plain arrays. An access that
/// is not wholly inside RAM fails (returns nil or false): MMIO and unbacked
/// addresses are not memory.
public protocol GuestMemoryAccess {
    /// Reads `count` bytes at guest-physical `address`, or nil.
    func read(_ address: UInt64, count: Int) -> [UInt8]?
    /// Writes `bytes` at guest-physical `address`; false if not RAM.
    func write(_ address: UInt64, bytes: [UInt8]) -> Bool
    /// Little-endian integer loads and stores; nil/false if not RAM.
    func load<T: FixedWidthInteger>(_: T.Type, at address: UInt64) -> T?
    func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) -> Bool
}

extension GuestMemoryAccess {
    public func load<T: FixedWidthInteger>(_: T.Type, at address: UInt64) -> T? {
        guard let bytes = read(address, count: MemoryLayout<T>.size) else { return nil }
        var v: T = 0
        for (i, b) in bytes.enumerated() { v |= T(truncatingIfNeeded: b) << (8 * i) }
        return v
    }

    public func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) -> Bool {
        write(address, bytes: (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) })
    }
}

extension Array where Element == UInt8 {
    /// The little-endian integer (x86 byte order) in the `count` bytes from
    /// `offset`, or in all the bytes from there when `count` is nil.
    public func littleEndian(at offset: Int = 0, count: Int? = nil) -> UInt64 {
        (0..<(count ?? self.count - offset)).reduce(0) { $0 | UInt64(self[offset + $1]) << (8 * UInt64($1)) }
    }

    /// The low `count` bytes of `value` in x86 byte order.
    public init(littleEndian value: UInt64, count: Int) {
        self = (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }
}

/// A flat array of bytes as guest RAM from address 0: for tests and tools.
public final class ArrayMemory: GuestMemoryAccess {
    public var bytes: [UInt8]
    public init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }

    public func read(_ address: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0, address <= UInt64(bytes.count), UInt64(count) <= UInt64(bytes.count) - address else { return nil }
        return Array(bytes[Int(address)..<Int(address) + count])
    }

    public func write(_ address: UInt64, bytes new: [UInt8]) -> Bool {
        guard address <= UInt64(bytes.count), UInt64(new.count) <= UInt64(bytes.count) - address else { return false }
        bytes.replaceSubrange(Int(address)..<Int(address) + new.count, with: new)
        return true
    }
}
