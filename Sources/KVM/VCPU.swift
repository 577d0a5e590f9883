import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Which parts of the register state KVM copies into `kvm_run` on every exit
/// (`KVM_CAP_SYNC_REGS`), so the exit path never needs GET/SET ioctls.
public struct SyncRegs: OptionSet, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let regs = SyncRegs(rawValue: 1 << 0)
    public static let sregs = SyncRegs(rawValue: 1 << 1)
    public static let events = SyncRegs(rawValue: 1 << 2)
}

/// `KVM_GUESTDBG_*` control bits for KVM_SET_GUEST_DEBUG.
public struct GuestDebugControl: OptionSet, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let enable = GuestDebugControl(rawValue: 0x1)
    public static let singleStep = GuestDebugControl(rawValue: 0x2)
    public static let useSoftwareBreakpoints = GuestDebugControl(rawValue: 0x1_0000)
    public static let useHardwareBreakpoints = GuestDebugControl(rawValue: 0x2_0000)
    public static let blockIRQ = GuestDebugControl(rawValue: 0x10_0000)
}

/// A KVM vCPU: its fd and its shared `kvm_run` page.
public final class VCPU: @unchecked Sendable {
    public let id: UInt32
    public let vm: VirtualMachine
    let fd: OwnedFD
    /// The `kvm_run` mapping shared with the kernel.
    public let run: UnsafeMutablePointer<kvm_run>
    private let mmapSize: Int
    /// `kvm_run.s.regs`, valid after each exit for the parts enabled by `syncRegs`.
    public let sync: UnsafeMutablePointer<kvm_sync_regs>
    /// KVM_GET_DEBUGREGS as of now, until the next KVM_RUN (`debugRegisters`).
    private var debugRegistersCache: kvm_debugregs?
    /// `specialRegisters` as last converted, and the raw sync copy it came
    /// from (`sregsSnapshot`): L0 reads it several times per exit, the
    /// special registers rarely change between exits, and converting eight
    /// segments was a tenth of L0's instructions (docs/PERFORMANCE.md).
    /// Reused while the raw bytes are the same, whoever wrote them; compared
    /// through pointers, as copying the structs cost as much as converting.
    var specialRegistersCache = SpecialRegisters()
    /// `specialRegistersCache` holds a conversion (a flag, not an optional:
    /// testing an optional this large copies it).
    var sregsConverted = false
    let sregsSnapshot = UnsafeMutablePointer<kvm_sregs>.allocate(capacity: 1)
    /// `specialRegistersVersion`; `sregsCompared` says the snapshot was
    /// compared with the sync copy since anything last wrote it (a run, a
    /// setter, KVM_SET_SREGS), so the version can be returned as it is.
    var sregsVersion: UInt64 = 0
    var sregsCompared = false
    /// `sync.pointee.sregs`, in place.
    var syncSRegs: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(sync) + MemoryLayout<kvm_sync_regs>.offset(of: \kvm_sync_regs.sregs)!
    }

    init(vm: VirtualMachine, id: UInt32, fd: consuming OwnedFD) throws(KVMError) {
        let size = vm.system.vcpuMmapSize
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.raw, 0), p != MAP_FAILED else {
            throw KVMError.last("mmap kvm_run")
        }
        self.vm = vm
        self.id = id
        self.fd = fd
        self.mmapSize = size
        run = p.assumingMemoryBound(to: kvm_run.self)
        sync = ckvm_sync_regs(run)
        // A stop request (StopRequest) kicks this vCPU out of KVM_RUN; the
        // vCPU is run on the thread that creates it.
        if ckvm_install_kick_handler(SIGUSR1) == 0 { _ = ckvm_watch_for_stop(run, ckvm_thread_self(), SIGUSR1) }
    }

    deinit {
        sregsSnapshot.deallocate()
        ckvm_unwatch_for_stop(run)
        munmap(run, mmapSize)
    }

    // MARK: Register state

    /// Asks KVM to fill `kvm_run.s.regs` with `parts` on every exit.
    public func enableSyncRegs(_ parts: SyncRegs) throws(KVMError) {
        guard vm.system.check(.syncRegs) & Int32(truncatingIfNeeded: parts.rawValue) == Int32(truncatingIfNeeded: parts.rawValue) else {
            throw KVMError("KVM_CAP_SYNC_REGS does not cover 0x\(String(parts.rawValue, radix: 16))", errno: ENOTSUP)
        }
        run.pointee.kvm_valid_regs = parts.rawValue
    }

    /// Tells KVM to load `parts` of `kvm_run.s.regs` on the next KVM_RUN.
    @inline(__always)
    public func markDirty(_ parts: SyncRegs) { run.pointee.kvm_dirty_regs |= parts.rawValue }

    /// General-purpose registers from sync regs; setting marks them dirty.
    /// Valid after an exit with `.regs` synced, or after `setRegs`.
    public var regs: kvm_regs {
        @inline(__always) get { sync.pointee.regs }
        @inline(__always) set { sync.pointee.regs = newValue; markDirty(.regs) }
    }

    /// Special registers from sync regs; setting marks them dirty.
    public var sregs: kvm_sregs {
        get { sync.pointee.sregs }
        set { sync.pointee.sregs = newValue; sregsCompared = false; markDirty(.sregs) }
    }

    public func getRegs() throws(KVMError) -> kvm_regs {
        var r = kvm_regs()
        guard ckvm_ioctl_ptr(fd.raw, CKVM_GET_REGS, &r) == 0 else { throw KVMError.last("KVM_GET_REGS") }
        return r
    }

    public func setRegs(_ value: kvm_regs) throws(KVMError) {
        var r = value
        guard ckvm_ioctl_ptr(fd.raw, CKVM_SET_REGS, &r) == 0 else { throw KVMError.last("KVM_SET_REGS") }
        sync.pointee.regs = value   // keep the sync copy current until the next exit refreshes it
    }

    public func getSRegs() throws(KVMError) -> kvm_sregs {
        var r = kvm_sregs()
        guard ckvm_ioctl_ptr(fd.raw, CKVM_GET_SREGS, &r) == 0 else { throw KVMError.last("KVM_GET_SREGS") }
        return r
    }

    public func setSRegs(_ value: kvm_sregs) throws(KVMError) {
        var r = value
        guard ckvm_ioctl_ptr(fd.raw, CKVM_SET_SREGS, &r) == 0 else { throw KVMError.last("KVM_SET_SREGS") }
        sync.pointee.sregs = value
        sregsCompared = false
    }

    public func getEvents() throws(KVMError) -> kvm_vcpu_events {
        var e = kvm_vcpu_events()
        guard ckvm_ioctl_ptr(fd.raw, CKVM_GET_VCPU_EVENTS, &e) == 0 else { throw KVMError.last("KVM_GET_VCPU_EVENTS") }
        return e
    }

    /// KVM refuses a KVM_GET_MSRS or KVM_SET_MSRS of 256 entries or more
    /// (E2BIG, measured): longer lists go in chunks of this size.
    public static let msrChunk = 255

    /// KVM_GET_MSRS: the values of `indices`, or nil for the first one KVM
    /// cannot read (and every one after it).
    public func getMSRs(_ indices: [UInt32]) -> [UInt64?] {
        var values: [UInt64?] = []
        values.reserveCapacity(indices.count)
        for start in stride(from: 0, to: indices.count, by: Self.msrChunk) {
            let chunk = indices[start..<min(start + Self.msrChunk, indices.count)]
            let read: [UInt64?] = withFlexibleArray(kvm_msrs.self, kvm_msr_entry.self, count: chunk.count) { header, entries in
                header.pointee.nmsrs = UInt32(chunk.count)
                for (i, index) in chunk.enumerated() { entries[i].index = index }
                let n = max(0, Int(ckvm_ioctl_ptr(fd.raw, CKVM_GET_MSRS, header)))
                return (0..<chunk.count).map { $0 < n ? entries[$0].data : nil }
            }
            values += read
            if read.last.flatMap({ $0 }) == nil { break }
        }
        return values + Array(repeating: nil, count: indices.count - values.count)
    }

    /// KVM_SET_MSRS: writes the pairs in order; returns how many KVM took
    /// (it stops at the first it refuses).
    public func setMSRs(_ pairs: [(index: UInt32, value: UInt64)]) -> Int {
        var taken = 0
        for start in stride(from: 0, to: pairs.count, by: Self.msrChunk) {
            let chunk = pairs[start..<min(start + Self.msrChunk, pairs.count)]
            let n = withFlexibleArray(kvm_msrs.self, kvm_msr_entry.self, count: chunk.count) { header, entries in
                header.pointee.nmsrs = UInt32(chunk.count)
                for (i, p) in chunk.enumerated() { entries[i].index = p.index; entries[i].data = p.value }
                return max(0, Int(ckvm_ioctl_ptr(fd.raw, CKVM_SET_MSRS, header)))
            }
            taken += n
            if n < chunk.count { break }
        }
        return taken
    }

    /// KVM_GET_TSC_KHZ: the guest TSC frequency.
    public func tscKHz() throws(KVMError) -> UInt64 {
        let khz = ckvm_ioctl(fd.raw, CKVM_GET_TSC_KHZ)
        guard khz > 0 else { throw KVMError.last("KVM_GET_TSC_KHZ") }
        return UInt64(khz)
    }

    /// The guest's DR6 and DR7 (KVM_GET_DEBUGREGS): what its MOV from DR6
    /// and DR7 reads, whatever breakpoints the monitor sets with
    /// KVM_SET_GUEST_DEBUG.
    ///
    /// Only KVM_RUN changes them behind the monitor's back (a MOV to DR or a
    /// #DB delivery inside the guest; KVM_SET_GUEST_DEBUG leaves the guest's
    /// values alone), so the values read or set since the last KVM_RUN are
    /// kept and a second read costs no ioctl: the nested exit path reads
    /// both vCPUs' at every exit and entry.
    public func debugRegisters() throws(KVMError) -> DebugRegisters {
        let r = try currentDebugRegisters()
        return DebugRegisters(dr6: r.dr6, dr7: r.dr7)
    }

    /// Sets the guest's DR6 and DR7, keeping DR0-DR3 (KVM_SET_DEBUGREGS).
    public func setDebugRegisters(_ value: DebugRegisters) throws(KVMError) {
        var r = try currentDebugRegisters()
        r.dr6 = value.dr6
        r.dr7 = value.dr7
        r.flags = 0
        debugRegistersCache = nil
        guard ckvm_ioctl_ptr(fd.raw, CKVM_SET_DEBUGREGS, &r) == 0 else { throw KVMError.last("KVM_SET_DEBUGREGS") }
        debugRegistersCache = r
    }

    /// The guest's debug registers since the last KVM_RUN, read once.
    private func currentDebugRegisters() throws(KVMError) -> kvm_debugregs {
        if let cached = debugRegistersCache { return cached }
        var r = kvm_debugregs()
        guard ckvm_ioctl_ptr(fd.raw, CKVM_GET_DEBUGREGS, &r) == 0 else { throw KVMError.last("KVM_GET_DEBUGREGS") }
        debugRegistersCache = r
        return r
    }

    /// KVM_SET_CPUID2.
    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        let rc = withFlexibleArray(kvm_cpuid2.self, kvm_cpuid_entry2.self, count: entries.count) { header, out in
            header.pointee.nent = UInt32(entries.count)
            for (i, e) in entries.enumerated() {
                out[i].function = e.function; out[i].index = e.index; out[i].flags = e.flags
                out[i].eax = e.eax; out[i].ebx = e.ebx; out[i].ecx = e.ecx; out[i].edx = e.edx
            }
            return ckvm_ioctl_ptr(fd.raw, CKVM_SET_CPUID2, header)
        }
        guard rc == 0 else { throw KVMError.last("KVM_SET_CPUID2") }
    }

    /// KVM_SET_GUEST_DEBUG. `debugRegisters` are DR0-DR3, (unused 4, 5), DR6, DR7.
    public func setGuestDebug(_ control: GuestDebugControl, debugRegisters: [UInt64] = []) throws(KVMError) {
        var dbg = kvm_guest_debug()
        dbg.control = control.rawValue
        withUnsafeMutableBytes(of: &dbg.arch.debugreg) { raw in
            for (i, v) in debugRegisters.prefix(8).enumerated() { raw.storeBytes(of: v, toByteOffset: i * 8, as: UInt64.self) }
        }
        guard ckvm_ioctl_ptr(fd.raw, CKVM_SET_GUEST_DEBUG, &dbg) == 0 else { throw KVMError.last("KVM_SET_GUEST_DEBUG") }
    }

    // MARK: Interrupts (userspace irqchip)

    /// KVM_INTERRUPT: queue external interrupt `vector`; valid only when
    /// `readyForInterruptInjection` is true.
    public func injectInterrupt(_ vector: UInt8) throws(KVMError) {
        var irq = kvm_interrupt(irq: UInt32(vector))
        guard ckvm_ioctl_ptr(fd.raw, CKVM_INTERRUPT, &irq) == 0 else { throw KVMError.last("KVM_INTERRUPT(\(vector))") }
    }

    public var requestInterruptWindow: Bool {
        get { run.pointee.request_interrupt_window != 0 }
        set { run.pointee.request_interrupt_window = newValue ? 1 : 0 }
    }
    public var readyForInterruptInjection: Bool { run.pointee.ready_for_interrupt_injection != 0 }
    public var interruptFlag: Bool { run.pointee.if_flag != 0 }

    // MARK: Running

    /// One KVM_RUN. Returns the decoded exit; EINTR (a kick) is `.interrupted`.
    @inline(__always)
    public func runOnce() throws(KVMError) -> VCPUExit {
        debugRegistersCache = nil                   // the guest may change them now
        sregsCompared = false                       // and KVM rewrites the sync copy
        if ckvm_ioctl(fd.raw, CKVM_RUN) != 0 {
            let e = Glibc.errno
            guard e == EINTR || e == EAGAIN else { throw KVMError("KVM_RUN", errno: e) }
            run.pointee.immediate_exit = 0
            return .interrupted
        }
        return decodeExit()
    }

    @inline(__always)
    func decodeExit() -> VCPUExit {
        let r = run
        switch Int32(bitPattern: ckvm_run_exit_reason(r)) {
        case KVM_EXIT_IO:
            let size = ckvm_io_size(r)
            let dir: IODirection = ckvm_io_direction(r) == 0 ? .input : .output
            var value: UInt32 = 0
            if dir == .output {
                let data = UnsafeRawPointer(r) + Int(ckvm_io_data_offset(r))
                switch size {
                case 1: value = UInt32(data.load(as: UInt8.self))
                case 2: value = UInt32(data.loadUnaligned(as: UInt16.self))
                default: value = data.loadUnaligned(as: UInt32.self)
                }
            }
            return .io(IOExit(port: ckvm_io_port(r), size: size, direction: dir, count: ckvm_io_count(r), value: value))
        case KVM_EXIT_MMIO:
            let len = UInt8(min(ckvm_mmio_len(r), 8))
            let isWrite = ckvm_mmio_is_write(r) != 0
            var data: UInt64 = 0
            if isWrite {
                let src = UnsafeRawPointer(ckvm_mmio_data(r)!)
                for i in 0..<Int(len) { data |= UInt64(src.load(fromByteOffset: i, as: UInt8.self)) << (8 * i) }
            }
            return .mmio(MMIOExit(address: ckvm_mmio_phys_addr(r), length: len, isWrite: isWrite, data: data))
        case KVM_EXIT_HLT: return .hlt
        case KVM_EXIT_SHUTDOWN: return .shutdown
        case KVM_EXIT_X86_RDMSR:
            return .rdmsr(MSRExit(index: ckvm_msr_index(r), reason: UInt64(ckvm_msr_reason(r))))
        case KVM_EXIT_X86_WRMSR:
            return .wrmsr(MSRExit(index: ckvm_msr_index(r), reason: UInt64(ckvm_msr_reason(r)), data: ckvm_msr_data(r)))
        case KVM_EXIT_DEBUG:
            let d = ckvm_debug_arch(r)
            return .debug(DebugExit(exception: d.exception, pc: d.pc, dr6: d.dr6, dr7: d.dr7))
        case KVM_EXIT_INTERNAL_ERROR:
            return .internalError(decodeInternalError())
        case KVM_EXIT_IRQ_WINDOW_OPEN: return .irqWindowOpen
        case KVM_EXIT_INTR: return .interrupted
        case KVM_EXIT_FAIL_ENTRY: return .failEntry(hardwareReason: ckvm_fail_entry_reason(r), cpu: ckvm_fail_entry_cpu(r))
        case KVM_EXIT_SYSTEM_EVENT: return .systemEvent(type: ckvm_system_event_type(r))
        case KVM_EXIT_EXCEPTION: return .exception(vector: ckvm_ex_exception(r), errorCode: ckvm_ex_error_code(r))
        default: return .unknown(reason: ckvm_run_exit_reason(r))
        }
    }

    private func decodeInternalError() -> InternalErrorExit {
        let r = run
        let sub = ckvm_internal_suberror(r)
        let n = ckvm_internal_ndata(r)
        var exit = InternalErrorExit(suberror: sub, dataCount: n)
        if sub == UInt32(KVM_INTERNAL_ERROR_EMULATION),
           ckvm_emulation_flags(r) & UInt64(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0 {
            let size = Int(min(ckvm_emulation_insn_size(r), 15))
            let bytes = UnsafeBufferPointer(start: ckvm_emulation_insn_bytes(r), count: size)
            exit.instruction = InstructionBytes(bytes)
        } else {
            exit.data = (ckvm_internal_data(r, 0), ckvm_internal_data(r, 1), ckvm_internal_data(r, 2), ckvm_internal_data(r, 3))
        }
        return exit
    }

    // MARK: Completing exits

    /// The I/O data area of the current IO exit (`count * size` bytes).
    public var ioData: UnsafeMutableRawBufferPointer {
        let count = Int(ckvm_io_count(run)) * Int(ckvm_io_size(run))
        let offset = Int(ckvm_io_data_offset(run))
        let length = max(0, min(count, mmapSize - offset))
        return UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(run) + offset, count: length)
    }

    /// Answers an IN: `value` for element `index` of the current IO exit.
    @inline(__always)
    public func completeIOIn(_ value: UInt32, element index: Int = 0) {
        let size = Int(ckvm_io_size(run))
        let data = ioData
        guard (index + 1) * size <= data.count else { return }
        for i in 0..<size { data[index * size + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }

    /// Answers an MMIO read with the low `length` bytes of `value`.
    @inline(__always)
    public func completeMMIORead(_ value: UInt64) {
        let dst = ckvm_mmio_data(run)!
        for i in 0..<8 { dst[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    /// Answers an RDMSR/WRMSR exit; `fault` makes KVM inject #GP.
    @inline(__always)
    public func completeMSR(data: UInt64 = 0, fault: Bool) {
        ckvm_msr_reply(run, data, fault ? 1 : 0)
    }

    // MARK: Kicking

    /// A handle another thread can use to force this vCPU out of KVM_RUN.
    /// Must be created on the thread that runs the vCPU.
    public func makeKicker(signal: Int32 = SIGUSR1) throws(KVMError) -> VCPUKicker {
        let rc = ckvm_install_kick_handler(signal)
        guard rc == 0 else { throw KVMError("sigaction for vCPU kick", errno: -rc) }
        return VCPUKicker(thread: ckvm_thread_self(), signal: signal, run: run)
    }
}

/// Forces a vCPU out of KVM_RUN from another thread: `immediate_exit` covers
/// a kick that lands before KVM_RUN starts, the signal one that lands inside.
public struct VCPUKicker: @unchecked Sendable {
    let thread: UInt
    let signal: Int32
    let run: UnsafeMutablePointer<kvm_run>

    public func kick() {
        UnsafeMutableRawPointer(run).storeBytes(of: 1, toByteOffset: MemoryLayout<kvm_run>.offset(of: \.immediate_exit)!, as: UInt8.self)
        _ = ckvm_kick_thread(thread, signal)
    }
}

/// Runs `body` on a zeroed KVM structure with a trailing array: `Header`
/// followed by `count` `Entry` values (kvm_cpuid2, kvm_msrs), for one ioctl.
func withFlexibleArray<Header, Entry, R>(_: Header.Type, _: Entry.Type, count: Int,
                                         _ body: (UnsafeMutablePointer<Header>, UnsafeMutablePointer<Entry>) -> R) -> R {
    let bytes = MemoryLayout<Header>.size + max(count, 1) * MemoryLayout<Entry>.stride
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    return body(buffer.assumingMemoryBound(to: Header.self),
                (buffer + MemoryLayout<Header>.size).assumingMemoryBound(to: Entry.self))
}
