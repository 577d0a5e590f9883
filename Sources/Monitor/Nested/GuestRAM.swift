import KVM
import NestedVMX

/// L1's RAM as the core's `GuestMemoryAccess`: guest-physical addresses are
/// offsets into the KVM guest memory, and anything outside it is not RAM.
struct GuestRAM: GuestMemoryAccess {
    let memory: GuestMemory

    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        memory.bytes(at: address, count: count).map { Array($0) }
    }

    func write(_ address: UInt64, bytes: [UInt8]) -> Bool {
        memory.write(bytes, at: address)
    }

    func load<T: FixedWidthInteger>(_: T.Type, at address: UInt64) -> T? {
        memory.load(T.self, at: address)
    }

    func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) -> Bool {
        memory.store(value, at: address)
    }
}
