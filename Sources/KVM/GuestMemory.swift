import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Host memory that backs guest RAM. It is a memfd mapped shared, so a second
/// VM (L2's, later) can map the very same pages.
public final class GuestMemory: @unchecked Sendable {
    public let size: Int
    public let pointer: UnsafeMutableRawPointer
    let fd: OwnedFD

    public init(size: Int, name: String = "terrapin-ram") throws(KVMError) {
        guard size > 0, size % 4096 == 0 else {
            throw KVMError("guest memory size \(size) is not a positive multiple of 4096", errno: EINVAL)
        }
        let raw = ckvm_memfd_create(name, 1 /* MFD_CLOEXEC */)
        guard raw >= 0 else { throw KVMError.last("memfd_create") }
        let owned = OwnedFD(raw)
        guard ftruncate(raw, off_t(size)) == 0 else { throw KVMError.last("ftruncate memfd to \(size) bytes") }
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, raw, 0), p != MAP_FAILED else {
            throw KVMError.last("mmap guest memory")
        }
        fd = owned
        pointer = p
        self.size = size
    }

    deinit { munmap(pointer, size) }

    /// The host bytes of [offset, offset+count), or nil when that range is not
    /// wholly inside this memory. All guest-supplied addresses go through here.
    @inlinable @inline(__always)
    public func bytes(at offset: UInt64, count: Int) -> UnsafeMutableRawBufferPointer? {
        guard count >= 0, offset <= UInt64(size), UInt64(count) <= UInt64(size) - offset else { return nil }
        return UnsafeMutableRawBufferPointer(start: pointer + Int(offset), count: count)
    }

    /// Copies `data` to `offset`; false when it does not fit.
    @discardableResult
    public func write(_ data: some Collection<UInt8>, at offset: UInt64) -> Bool {
        guard let dst = bytes(at: offset, count: data.count) else { return false }
        dst.copyBytes(from: data)
        return true
    }

    /// Reads `count` bytes at `offset`, or nil when out of range.
    public func read(at offset: UInt64, count: Int) -> [UInt8]? {
        guard let src = bytes(at: offset, count: count) else { return nil }
        return Array(src)
    }

    /// Little-endian load of an integer, or nil when out of range. The
    /// common widths go through concrete unaligned loads: called from
    /// generic code that is not specialized (the page walkers of
    /// NestedVMX), a load of `T` itself cost about 600 instructions in
    /// metadata look-ups (callgrind, docs/PERFORMANCE.md).
    @inlinable
    public func load<T: FixedWidthInteger>(_: T.Type, at offset: UInt64) -> T? {
        guard let src = bytes(at: offset, count: MemoryLayout<T>.size) else { return nil }
        switch MemoryLayout<T>.size {
        case 1: return T(truncatingIfNeeded: src.loadUnaligned(as: UInt8.self))
        case 2: return T(truncatingIfNeeded: UInt16(littleEndian: src.loadUnaligned(as: UInt16.self)))
        case 4: return T(truncatingIfNeeded: UInt32(littleEndian: src.loadUnaligned(as: UInt32.self)))
        case 8: return T(truncatingIfNeeded: UInt64(littleEndian: src.loadUnaligned(as: UInt64.self)))
        default: return T(littleEndian: src.loadUnaligned(as: T.self))
        }
    }

    /// Little-endian store of an integer; false when out of range.
    @inlinable @discardableResult
    public func store<T: FixedWidthInteger>(_ value: T, at offset: UInt64) -> Bool {
        guard let dst = bytes(at: offset, count: MemoryLayout<T>.size) else { return false }
        switch MemoryLayout<T>.size {
        case 1: dst.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
        case 2: dst.storeBytes(of: UInt16(truncatingIfNeeded: value).littleEndian, as: UInt16.self)
        case 4: dst.storeBytes(of: UInt32(truncatingIfNeeded: value).littleEndian, as: UInt32.self)
        case 8: dst.storeBytes(of: UInt64(truncatingIfNeeded: value).littleEndian, as: UInt64.self)
        default: dst.storeBytes(of: value.littleEndian, as: T.self)
        }
        return true
    }

    /// Zeroes [offset, offset+count); false when out of range.
    @discardableResult
    public func zero(at offset: UInt64, count: Int) -> Bool {
        guard let dst = bytes(at: offset, count: count) else { return false }
        dst.initializeMemory(as: UInt8.self, repeating: 0)
        return true
    }
}
