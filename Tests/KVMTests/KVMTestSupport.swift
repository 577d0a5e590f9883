import CKVM
import Foundation
import XCTest
import KVM
#if canImport(Glibc)
import Glibc
#endif

/// Opens /dev/kvm, or skips the test with the reason when the host has none.
func openKVM() throws -> KVMSystem {
    guard access("/dev/kvm", R_OK | W_OK) == 0 else {
        throw XCTSkip("/dev/kvm is missing or not read-write for this user (errno \(errno)); KVM tests need it")
    }
    return try KVMSystem()
}

/// One VM with one slot of RAM at guest-physical 0 and one vCPU in real mode
/// (CS base 0, selector 0), RIP at `codeAddress`, SP at `stackTop`, sync regs
/// for regs and sregs. RAM starts filled with HLT (0xF4) so a guest that runs
/// off its code stops instead of spinning.
final class TestVM: @unchecked Sendable {
    static let codeAddress: UInt64 = 0x1000
    static let stackTop: UInt64 = 0x7000

    let system: KVMSystem
    let vm: VirtualMachine
    let memory: GuestMemory
    let vcpu: VCPU

    init(code: [UInt8] = [], at address: UInt64 = TestVM.codeAddress, memorySize: Int = 0x8000,
         sharing shared: GuestMemory? = nil, system: KVMSystem? = nil) throws {
        self.system = try system ?? openKVM()
        vm = try self.system.createVM()
        if let shared {
            memory = shared
        } else {
            memory = try GuestMemory(size: memorySize)
            memory.bytes(at: 0, count: memorySize)!.initializeMemory(as: UInt8.self, repeating: 0xF4)
        }
        try vm.map(memory, slot: 0, at: 0)
        vcpu = try vm.createVCPU()
        try vcpu.enableSyncRegs([.regs, .sregs])
        var s = try vcpu.getSRegs()
        s.cs.base = 0
        s.cs.selector = 0
        try vcpu.setSRegs(s)
        var r = kvm_regs()
        r.rip = address
        r.rflags = 2
        r.rsp = TestVM.stackTop
        try vcpu.setRegs(r)
        if !code.isEmpty { load(code, at: address) }
    }

    func load(_ bytes: [UInt8], at address: UInt64) {
        precondition(memory.write(bytes, at: address), "code at 0x\(String(address, radix: 16)) does not fit")
    }

    func run() throws -> VCPUExit { try vcpu.runOnce() }

    /// Switches the vCPU to 64-bit long mode: identity-maps the first 2 MiB
    /// with one large page (PML4 at 0x5000, PDPT 0x6000, PD 0x7000), flat
    /// 64-bit CS (selector 8) and data segments (0x10), RIP = `rip`.
    func enterLongMode(rip: UInt64 = TestVM.codeAddress, stack: UInt64 = 0x4f00) throws {
        let pml4: UInt64 = 0x5000, pdpt: UInt64 = 0x6000, pd: UInt64 = 0x7000
        for table in [pml4, pdpt, pd] { precondition(memory.zero(at: table, count: 4096)) }
        memory.store(pdpt | 0x3, at: pml4)         // present | writable
        memory.store(pd | 0x3, at: pdpt)
        memory.store(UInt64(0x0 | 0x83), at: pd)   // present | writable | 2 MiB page

        var s = try vcpu.getSRegs()
        var code = kvm_segment()
        code.base = 0; code.limit = 0xffff_ffff; code.selector = 0x8
        code.type = 11; code.present = 1; code.dpl = 0; code.db = 0; code.s = 1; code.l = 1; code.g = 1
        var data = kvm_segment()
        data.base = 0; data.limit = 0xffff_ffff; data.selector = 0x10
        data.type = 3; data.present = 1; data.dpl = 0; data.db = 1; data.s = 1; data.l = 0; data.g = 1
        s.cs = code
        s.ds = data; s.es = data; s.fs = data; s.gs = data; s.ss = data
        s.cr3 = pml4
        s.cr4 = 1 << 5                              // PAE
        s.cr0 = 0x8005_0033                         // PG | AM | WP | NE | ET | MP | PE
        s.efer = 0x500                              // LMA | LME
        try vcpu.setSRegs(s)
        var r = kvm_regs()
        r.rip = rip
        r.rflags = 2
        r.rsp = stack
        try vcpu.setRegs(r)
    }
}

// MARK: Exit matching

extension VCPUExit {
    var io: IOExit? { if case .io(let e) = self { return e } else { return nil } }
    var mmio: MMIOExit? { if case .mmio(let e) = self { return e } else { return nil } }
    var rdmsr: MSRExit? { if case .rdmsr(let e) = self { return e } else { return nil } }
    var wrmsr: MSRExit? { if case .wrmsr(let e) = self { return e } else { return nil } }
    var debug: DebugExit? { if case .debug(let e) = self { return e } else { return nil } }
    var internalError: InternalErrorExit? { if case .internalError(let e) = self { return e } else { return nil } }
    var isHLT: Bool { if case .hlt = self { return true } else { return false } }
    var isShutdown: Bool { if case .shutdown = self { return true } else { return false } }
    var isInterrupted: Bool { if case .interrupted = self { return true } else { return false } }
}

func expectIO(_ exit: VCPUExit, file: StaticString = #filePath, line: UInt = #line) throws -> IOExit {
    try XCTUnwrap(exit.io, "expected an IO exit, got \(exit)", file: file, line: line)
}

func expectMMIO(_ exit: VCPUExit, file: StaticString = #filePath, line: UInt = #line) throws -> MMIOExit {
    try XCTUnwrap(exit.mmio, "expected an MMIO exit, got \(exit)", file: file, line: line)
}

func expectHLT(_ exit: VCPUExit, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(exit.isHLT, "expected HLT, got \(exit)", file: file, line: line)
}

/// A value handed between threads under a lock.
final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value?
    var value: Value? {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}
