import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Why KVM handed an MSR access to userspace (`KVM_MSR_EXIT_REASON_*`).
public struct MSRExitReasons: OptionSet, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// The access would have raised #GP inside KVM.
    public static let invalid = MSRExitReasons(rawValue: UInt64(CKVM_MSR_EXIT_REASON_INVAL))
    /// KVM does not know the MSR.
    public static let unknown = MSRExitReasons(rawValue: UInt64(CKVM_MSR_EXIT_REASON_UNKNOWN))
    /// The MSR filter denied the access.
    public static let filter = MSRExitReasons(rawValue: UInt64(CKVM_MSR_EXIT_REASON_FILTER))
}

/// A KVM virtual machine: its memory slots, capabilities and vCPUs.
public final class VirtualMachine: @unchecked Sendable {
    public let system: KVMSystem
    let fd: OwnedFD

    init(system: KVMSystem, fd: consuming OwnedFD) {
        self.system = system
        self.fd = fd
    }

    /// KVM_ENABLE_CAP on the VM.
    public func enable(_ cap: KVMCapability, _ args: UInt64...) throws(KVMError) {
        var request = kvm_enable_cap()
        request.cap = UInt32(cap.rawValue)
        withUnsafeMutableBytes(of: &request.args) { raw in
            for (i, a) in args.prefix(4).enumerated() { raw.storeBytes(of: a, toByteOffset: i * 8, as: UInt64.self) }
        }
        guard ckvm_ioctl_ptr(fd.raw, CKVM_ENABLE_CAP, &request) == 0 else {
            throw KVMError.last("KVM_ENABLE_CAP(\(cap.rawValue))")
        }
    }

    /// KVM_CAP_DISABLE_QUIRKS2: turns off the quirks in `mask` (`KVM_X86_QUIRK_*`).
    public func disableQuirks(_ mask: UInt64) throws(KVMError) {
        let supported = UInt64(system.check(.disableQuirks2))
        guard mask & ~supported == 0 else {
            throw KVMError("disable KVM quirks 0x\(String(mask, radix: 16)) (host supports 0x\(String(supported, radix: 16)))", errno: EINVAL)
        }
        try enable(.disableQuirks2, mask)
    }

    /// KVM_CAP_X86_USER_SPACE_MSR: MSR accesses for `reasons` exit to userspace.
    public func enableUserSpaceMSR(_ reasons: MSRExitReasons) throws(KVMError) {
        try enable(.x86UserSpaceMSR, reasons.rawValue)
    }

    /// KVM_X86_SET_MSR_FILTER allowing everything except `denied`, whose
    /// reads and writes exit to userspace. At most 16 ranges of up to 2048 MSRs.
    public func denyMSRs(_ denied: [ClosedRange<UInt32>]) throws(KVMError) {
        guard denied.count <= Int(CKVM_MSR_FILTER_MAX_RANGES), denied.allSatisfy({ $0.count <= 2048 }) else {
            throw KVMError("MSR filter with \(denied.count) ranges (at most \(CKVM_MSR_FILTER_MAX_RANGES) of 2048 MSRs)", errno: E2BIG)
        }
        let bases = denied.map(\.lowerBound), counts = denied.map { UInt32($0.count) }
        let rc = bases.withUnsafeBufferPointer { b in
            counts.withUnsafeBufferPointer { c in ckvm_set_msr_deny_ranges(fd.raw, b.baseAddress, c.baseAddress, UInt32(b.count)) }
        }
        guard rc == 0 else { throw KVMError.last("KVM_X86_SET_MSR_FILTER") }
    }

    /// One range of a general MSR filter: `allow` has a bit per MSR from
    /// `base`, 1 = the access is allowed (handled by KVM), 0 = it exits.
    public struct MSRFilterRange: Sendable {
        public var base: UInt32
        public var reads: Bool
        public var writes: Bool
        public var allow: [UInt8]
        /// MSRs the range covers from `base`: by default every bit of `allow`.
        public var count: Int
        public init(base: UInt32, reads: Bool, writes: Bool, allow: [UInt8], count: Int? = nil) {
            self.base = base; self.reads = reads; self.writes = writes; self.allow = allow
            self.count = min(count ?? allow.count * 8, allow.count * 8)
        }

        /// Every MSR of `msrs` exits, for the accesses named; nothing else
        /// is covered (KVM takes the first range that covers an MSR).
        public static func denying(_ msrs: ClosedRange<UInt32>, reads: Bool, writes: Bool) -> MSRFilterRange {
            MSRFilterRange(base: msrs.lowerBound, reads: reads, writes: writes,
                           allow: [UInt8](repeating: 0, count: (msrs.count + 7) / 8), count: msrs.count)
        }
    }

    /// KVM_X86_SET_MSR_FILTER with explicit ranges and a default for MSRs
    /// outside them.
    public func setMSRFilter(defaultAllow: Bool, ranges: [MSRFilterRange]) throws(KVMError) {
        guard ranges.count <= Int(CKVM_MSR_FILTER_MAX_RANGES) else {
            throw KVMError("MSR filter with \(ranges.count) ranges", errno: E2BIG)
        }
        var blob: [UInt8] = [], offsets: [UInt32] = []
        for r in ranges { offsets.append(UInt32(blob.count)); blob += r.allow }
        let bases = ranges.map(\.base), counts = ranges.map { UInt32($0.count) }
        let flags = ranges.map { UInt32(($0.reads ? 1 : 0) | ($0.writes ? 2 : 0)) }
        let rc = blob.withUnsafeBufferPointer { b in
            ckvm_set_msr_filter(fd.raw, defaultAllow ? 1 : 0, bases, counts, flags, b.baseAddress, offsets, UInt32(ranges.count))
        }
        guard rc == 0 else { throw KVMError.last("KVM_X86_SET_MSR_FILTER") }
    }

    /// KVM_SET_USER_MEMORY_REGION: maps `host` at guest-physical `guestPhysical`.
    /// A size of 0 deletes the slot. Read-only slots turn writes into MMIO exits.
    public func setMemoryRegion(slot: UInt32, guestPhysical: UInt64, size: Int,
                                host: UnsafeMutableRawPointer?, readOnly: Bool = false) throws(KVMError) {
        var region = kvm_userspace_memory_region()
        region.slot = slot
        region.flags = readOnly ? UInt32(KVM_MEM_READONLY) : 0
        region.guest_phys_addr = guestPhysical
        region.memory_size = UInt64(size)
        region.userspace_addr = UInt64(UInt(bitPattern: host))
        guard ckvm_ioctl_ptr(fd.raw, CKVM_SET_USER_MEMORY_REGION, &region) == 0 else {
            throw KVMError.last("KVM_SET_USER_MEMORY_REGION(slot \(slot), gpa 0x\(String(guestPhysical, radix: 16)), \(size) bytes)")
        }
    }

    /// Maps (part of) `memory` into the guest-physical address space.
    public func map(_ memory: GuestMemory, offset: Int = 0, size: Int? = nil, slot: UInt32,
                    at guestPhysical: UInt64, readOnly: Bool = false) throws(KVMError) {
        let length = size ?? (memory.size - offset)
        guard offset >= 0, length > 0, offset + length <= memory.size else {
            throw KVMError("map \(length) bytes at offset \(offset) of \(memory.size)-byte memory", errno: EINVAL)
        }
        try setMemoryRegion(slot: slot, guestPhysical: guestPhysical, size: length,
                            host: memory.pointer + offset, readOnly: readOnly)
    }

    /// KVM_SET_TSS_ADDR: three pages KVM needs on Intel hosts for real-mode
    /// emulation; placed just below the 4 GiB BIOS area, away from guest RAM.
    public func setTSSAddress(_ address: UInt64 = 0xfffb_d000) throws(KVMError) {
        guard ckvm_ioctl_arg(fd.raw, CKVM_SET_TSS_ADDR, UInt(address)) == 0 else {
            throw KVMError.last("KVM_SET_TSS_ADDR")
        }
    }

    /// KVM_CREATE_VCPU, with its `kvm_run` mapping.
    public func createVCPU(id: UInt32 = 0) throws(KVMError) -> VCPU {
        let raw = ckvm_ioctl_arg(fd.raw, CKVM_CREATE_VCPU, UInt(id))
        guard raw >= 0 else { throw KVMError.last("KVM_CREATE_VCPU(\(id))") }
        return try VCPU(vm: self, id: id, fd: OwnedFD(raw))
    }
}
