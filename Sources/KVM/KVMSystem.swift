import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// KVM capability numbers used by Terrapin (linux/kvm.h `KVM_CAP_*`).
public struct KVMCapability: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let userMemory = KVMCapability(rawValue: 3)
    public static let setGuestDebug = KVMCapability(rawValue: 23)
    public static let syncRegs = KVMCapability(rawValue: 74)
    public static let readonlyMem = KVMCapability(rawValue: 81)
    public static let immediateExit = KVMCapability(rawValue: 136)
    public static let x86UserSpaceMSR = KVMCapability(rawValue: 188)
    public static let x86MSRFilter = KVMCapability(rawValue: 189)
    public static let disableQuirks2 = KVMCapability(rawValue: 213)
    public static let nrMemslots = KVMCapability(rawValue: 10)
}

/// One CPUID leaf as KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2 carry it.
public struct CPUIDEntry: Equatable, Sendable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32

    public init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0,
                eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
        self.function = function; self.index = index; self.flags = flags
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }
}

/// `/dev/kvm`: the system-level handle.
public final class KVMSystem: @unchecked Sendable {
    let fd: OwnedFD
    /// Size of each vCPU's `kvm_run` mapping.
    public let vcpuMmapSize: Int

    public init(path: String = "/dev/kvm") throws(KVMError) {
        let raw = open(path, O_RDWR | O_CLOEXEC)
        guard raw >= 0 else { throw KVMError.last("open \(path)") }
        fd = OwnedFD(raw)
        let version = ckvm_ioctl(raw, CKVM_GET_API_VERSION)
        guard version == KVM_API_VERSION else {
            throw KVMError("KVM_GET_API_VERSION returned \(version), expected \(KVM_API_VERSION)", errno: 0)
        }
        let size = ckvm_ioctl(raw, CKVM_GET_VCPU_MMAP_SIZE)
        guard size > 0 else { throw KVMError.last("KVM_GET_VCPU_MMAP_SIZE") }
        vcpuMmapSize = Int(size)
    }

    /// KVM_CHECK_EXTENSION: 0 when absent, otherwise a capability-specific value.
    public func check(_ cap: KVMCapability) -> Int32 {
        max(0, ckvm_ioctl_arg(fd.raw, CKVM_CHECK_EXTENSION, UInt(cap.rawValue)))
    }

    /// KVM_GET_SUPPORTED_CPUID: the leaves this host's KVM can expose.
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        var capacity = 128
        while capacity <= 4096 {
            let found = withFlexibleArray(kvm_cpuid2.self, kvm_cpuid_entry2.self, count: capacity) { header, entries -> [CPUIDEntry]? in
                header.pointee.nent = UInt32(capacity)
                guard ckvm_ioctl_ptr(fd.raw, CKVM_GET_SUPPORTED_CPUID, header) == 0 else { return nil }
                return (0..<Int(header.pointee.nent)).map { i in
                    let e = entries[i]
                    return CPUIDEntry(function: e.function, index: e.index, flags: e.flags,
                                      eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx)
                }
            }
            if let found { return found }
            guard Glibc.errno == E2BIG else { throw KVMError.last("KVM_GET_SUPPORTED_CPUID") }
            capacity *= 2
        }
        throw KVMError("KVM_GET_SUPPORTED_CPUID", errno: E2BIG)
    }

    /// KVM_CREATE_VM.
    public func createVM() throws(KVMError) -> VirtualMachine {
        let raw = ckvm_ioctl_arg(fd.raw, CKVM_CREATE_VM, 0)
        guard raw >= 0 else { throw KVMError.last("KVM_CREATE_VM") }
        return VirtualMachine(system: self, fd: OwnedFD(raw))
    }
}

/// The calling thread's Linux thread id (gettid(2)): what host tracers such
/// as trace-cmd and perf print for the thread that runs a vCPU.
public func currentThreadID() -> Int32 { ckvm_gettid() }
