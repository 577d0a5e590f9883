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
    @inline(__always)
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

    /// Little-endian load of an integer, or nil when out of range.
    public func load<T: FixedWidthInteger>(_: T.Type, at offset: UInt64) -> T? {
        guard let src = bytes(at: offset, count: MemoryLayout<T>.size) else { return nil }
        return T(littleEndian: src.loadUnaligned(as: T.self))
    }

    /// Little-endian store of an integer; false when out of range.
    @discardableResult
    public func store<T: FixedWidthInteger>(_ value: T, at offset: UInt64) -> Bool {
        guard let dst = bytes(at: offset, count: MemoryLayout<T>.size) else { return false }
        dst.storeBytes(of: value.littleEndian, as: T.self)
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
