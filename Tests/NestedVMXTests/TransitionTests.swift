import NestedVMX
import VMXArch
import XCTest

/// EPT12 walks (SDM 29.3.2-29.3.3), exit routing (26.1.3) and the state
/// transfers of VM entry and exit (27.3.2, 28.3, 28.5), over plain memory.
final class TransitionTests: XCTestCase {
    /// An EPT with PML4 at 0x10000, PDPT at 0x11000, PD at 0x12000, PT at 0x13000.
    func makeEPT() -> (ArrayMemory, UInt64) {
        let m = ArrayMemory(size: 0x40_0000)
        let rwx: UInt64 = 7, wb: UInt64 = 6 << 3
        _ = m.store(UInt64(0x11000) | rwx, at: 0x10000)                 // PML4[0]
        _ = m.store(UInt64(0x12000) | rwx, at: 0x11000)                 // PDPT[0]
        _ = m.store(UInt64(0x20_0000) | rwx | wb | 1 << 7, at: 0x12000) // PD[0]: 2 MiB at L1 2 MiB
        _ = m.store(UInt64(0x13000) | rwx, at: 0x12008)                 // PD[1] -> PT
        _ = m.store(UInt64(0x30_1000) | 1 | wb, at: 0x13000)            // PT[0]: 4 KiB read-only
        _ = m.store(UInt64(0x30_2000) | 3 | wb, at: 0x13008)            // PT[1]: read/write, no execute
        let eptp: UInt64 = 0x10000 | 6 | 3 << 3
        return (m, eptp)
    }

    func walk(_ a: UInt64, _ access: EPTWalker.Access, _ m: ArrayMemory, _ eptp: UInt64)
        -> Result<EPTWalker.Translation, EPTWalker.Failure> {
        EPTWalker.translate(a, access: access, eptp: eptp, physicalAddressBits: 46, memory: m)
    }

    func testLargeAndSmallPagesTranslate() throws {
        let (m, eptp) = makeEPT()
        let big = try walk(0x1234, .init(read: true), m, eptp).get()
        XCTAssertEqual(big.physical, 0x20_1234)
        XCTAssertEqual(big.pageSize, 0x20_0000)
        let small = try walk(0x20_0010, .init(read: true), m, eptp).get()
        XCTAssertEqual(small.physical, 0x30_1010)
        XCTAssertEqual(small.pageSize, 0x1000)
        XCTAssertFalse(small.write)
        XCTAssertEqual(big.address, 0x1234, "the L2-physical address walked")
        XCTAssertEqual(small.address, 0x20_0010)
    }

    /// `nextLeaf` visits the leaves in address order, from inside a leaf
    /// too, and skips what is not present (for the eager EPT02 policy).
    func testNextLeafVisitsEveryPresentLeafInOrder() {
        let (m, eptp) = makeEPT()
        _ = m.store(UInt64(0x14000) | 7, at: 0x11000 + 8 * 3)          // PDPT[3] -> an empty PD
        _ = m.store(UInt64(0x7_0000) | 1 | 6 << 3 | 1 << 7, at: 0x11000 + 8 * 5)    // PDPT[5]: 1 GiB leaf
        func next(_ a: UInt64) -> (UInt64, UInt64)? {
            EPTWalker.nextLeaf(atOrAbove: a, eptp: eptp, physicalAddressBits: 46, memory: m).map { ($0.start, $0.end) }
        }
        var seen: [UInt64] = []
        var at: UInt64 = 0
        while let (start, end) = next(at) {
            seen.append(start)
            at = end
        }
        XCTAssertEqual(seen, [0, 0x20_0000, 0x20_1000, 5 << 30])
        XCTAssertEqual(next(0x1234)?.0, 0x1234, "from inside a leaf: the rest of it")
        XCTAssertEqual(next(0x1234)?.1, 0x20_0000)
        XCTAssertEqual(next(0x20_2000)?.0, 5 << 30, "the rest of the PT, PDPT[1..4] and the empty PD are skipped")
        XCTAssertNil(next(6 << 30))
        XCTAssertNil(next(1 << 48))
    }

    func testViolationsCarryTheAccessAndThePermissions() {
        let (m, eptp) = makeEPT()
        // Write to the read-only page: bit 1 (write) and bit 3 (readable).
        XCTAssertEqual(walk(0x20_0000, .init(write: true), m, eptp), .failure(.violation(qualification: 0b01010)))
        // Fetch from the non-executable page: bit 2 and bits 3, 4 (readable, writable).
        XCTAssertEqual(walk(0x20_1000, .init(fetch: true), m, eptp), .failure(.violation(qualification: 0b11100)))
        // Not present: only the access bit.
        XCTAssertEqual(walk(0x20_2000, .init(read: true), m, eptp), .failure(.violation(qualification: 1)))
        XCTAssertEqual(walk(0x8000_0000, .init(write: true), m, eptp), .failure(.violation(qualification: 2)))
    }

    /// SDM 29.3.5: with EPTP bit 6, a walk sets A in every entry it used and
    /// D in the leaf for a write; without it, nothing changes.
    func testAccessedAndDirtyFlags() throws {
        let (m, eptp) = makeEPT()
        let before = m.bytes
        _ = try EPTWalker.translate(0x1234, access: .init(read: true), eptp: eptp, physicalAddressBits: 46, memory: m,
                                    setAccessedDirty: true).get()
        XCTAssertEqual(m.bytes, before, "EPTP bit 6 clear: no flags")
        let ad = eptp | 1 << 6
        let read = try EPTWalker.translate(0x1234, access: .init(read: true), eptp: ad, physicalAddressBits: 46, memory: m,
                                           setAccessedDirty: true).get()
        XCTAssertFalse(read.dirty)
        XCTAssertEqual(m.load(UInt64.self, at: 0x10000)! & 0x300, 0x100)        // PML4E: A
        XCTAssertEqual(m.load(UInt64.self, at: 0x11000)! & 0x300, 0x100)        // PDPTE: A
        XCTAssertEqual(m.load(UInt64.self, at: 0x12000)! & 0x300, 0x100)        // 2 MiB leaf: A, not D
        let write = try EPTWalker.translate(0x1234, access: .init(write: true), eptp: ad, physicalAddressBits: 46, memory: m,
                                            setAccessedDirty: true).get()
        XCTAssertTrue(write.dirty)
        XCTAssertEqual(m.load(UInt64.self, at: 0x12000)! & 0x300, 0x300)        // leaf: A and D
        XCTAssertEqual(m.load(UInt64.self, at: 0x11000)! & 0x200, 0, "D is set in the leaf only")
        // A violation sets nothing.
        _ = EPTWalker.translate(0x20_0000, access: .init(write: true), eptp: ad, physicalAddressBits: 46, memory: m,
                                setAccessedDirty: true)
        XCTAssertEqual(m.load(UInt64.self, at: 0x13000)! & 0x300, 0)
    }

    func testMisconfigurations() {
        let (m, eptp) = makeEPT()
        _ = m.store(UInt64(0x30_3000) | 2 | 6 << 3, at: 0x13010)       // write without read
        XCTAssertEqual(walk(0x20_2000, .init(read: true), m, eptp), .failure(.misconfiguration))
        _ = m.store(UInt64(0x30_3000) | 1 | 2 << 3, at: 0x13010)       // memory type 2
        XCTAssertEqual(walk(0x20_2000, .init(read: true), m, eptp), .failure(.misconfiguration))
        _ = m.store(UInt64(1) << 50 | 0x30_3000 | 1 | 6 << 3, at: 0x13010)  // beyond MAXPHYADDR
        XCTAssertEqual(walk(0x20_2000, .init(read: true), m, eptp), .failure(.misconfiguration))
        _ = m.store(UInt64(0x11000) | 7 | 1 << 7, at: 0x10000)         // PS in a PML4E
        XCTAssertEqual(walk(0, .init(read: true), m, eptp), .failure(.misconfiguration))
        // A table outside RAM reads as all ones: misconfigured.
        XCTAssertEqual(walk(0, .init(read: true), m, 0x4000_0000 | 6 | 3 << 3), .failure(.misconfiguration))
        // Execute-only (bits 2:0 = 100b), which L0 does not advertise: misconfigured
        // for every access, fetches included (29.3.3.1).
        XCTAssertEqual(VMXCapabilities.terrapin().eptVPIDCap & 1, 0, "execute-only is not advertised")
        _ = m.store(UInt64(0x30_3000) | 4 | 6 << 3, at: 0x13010)
        XCTAssertEqual(walk(0x20_2000, .init(fetch: true), m, eptp), .failure(.misconfiguration))
        XCTAssertEqual(walk(0x20_2000, .init(read: true), m, eptp), .failure(.misconfiguration))
        // Reserved bits of large leaves: 20:12 of a 2 MiB page, 29:12 of a 1 GiB page (Tables 29-4, 29-2).
        _ = m.store(UInt64(0x11000) | 7, at: 0x10000)                  // the PML4E valid again
        _ = m.store(UInt64(0x20_0000) | 7 | 6 << 3 | 1 << 7 | 1 << 12, at: 0x12000)
        XCTAssertEqual(walk(0x1234, .init(read: true), m, eptp), .failure(.misconfiguration))
        _ = m.store(UInt64(0x4000_0000) | 7 | 6 << 3 | 1 << 7 | 1 << 21, at: 0x11000)
        XCTAssertEqual(walk(0x1234, .init(read: true), m, eptp), .failure(.misconfiguration))
        _ = m.store(UInt64(0x4000_0000) | 7 | 6 << 3 | 1 << 7, at: 0x11000)
        XCTAssertEqual(try walk(0x1234, .init(read: true), m, eptp).get().physical, 0x4000_1234, "without them: a 1 GiB page")
    }

    func testIOBitmapsAndUnconditionalExiting() {
        let m = ArrayMemory(size: 0x10000)
        var vmcs = VMCS12(address: 0)
        vmcs.write(.processorBasedControls, 1 << 24)
        XCTAssertTrue(ExitRouting.wantsIO(port: 0x80, size: 1, vmcs: vmcs, memory: m))
        vmcs.write(.processorBasedControls, 1 << 25)
        vmcs.write(.ioBitmapA, 0x1000)
        vmcs.write(.ioBitmapB, 0x2000)
        XCTAssertFalse(ExitRouting.wantsIO(port: 0x80, size: 1, vmcs: vmcs, memory: m))
        m.bytes[0x1000 + 0x3f8 / 8] = 1 << (0x3f8 % 8)
        XCTAssertTrue(ExitRouting.wantsIO(port: 0x3f8, size: 1, vmcs: vmcs, memory: m))
        XCTAssertTrue(ExitRouting.wantsIO(port: 0x3f6, size: 4, vmcs: vmcs, memory: m))    // spans 0x3f8
        m.bytes[0x2000 + 0x7fff / 8] = 0x80
        XCTAssertTrue(ExitRouting.wantsIO(port: 0xffff, size: 1, vmcs: vmcs, memory: m))
        XCTAssertTrue(ExitRouting.wantsIO(port: 0xfffe, size: 4, vmcs: vmcs, memory: m))   // wraps
        XCTAssertEqual(ExitRouting.ioQualification(port: 0x3f8, size: 1, input: false, string: false, rep: false), 0x3f8_0000)
        XCTAssertEqual(ExitRouting.ioQualification(port: 0x60, size: 4, input: true, string: true, rep: true), 0x60_003b)
        XCTAssertEqual(ExitRouting.ioQualification(port: 0x80, size: 1, input: false, string: false, rep: false, immediate: true),
                       0x80_0040)
    }

    func testIOInstructionEncodings() {
        // (string, rep, immediate) from the instruction bytes (SDM Vol. 2B).
        XCTAssertTrue(ExitRouting.ioEncoding([0xee]) == (false, false, false))          // out dx, al
        XCTAssertTrue(ExitRouting.ioEncoding([0xe6, 0x80]) == (false, false, true))     // out 0x80, al
        XCTAssertTrue(ExitRouting.ioEncoding([0x66, 0xe5, 0x60]) == (false, false, true)) // in ax, 0x60
        XCTAssertTrue(ExitRouting.ioEncoding([0xf3, 0x6e]) == (true, true, false))      // rep outsb
        XCTAssertTrue(ExitRouting.ioEncoding([0x66, 0xf3, 0x6d]) == (true, true, false)) // rep insw
        XCTAssertTrue(ExitRouting.ioEncoding([0x6f]) == (true, false, false))           // outsd
        XCTAssertTrue(ExitRouting.ioEncoding([]) == (false, false, false))              // unreadable: none set
    }

    func testMSRBitmaps() {
        let m = ArrayMemory(size: 0x10000)
        var vmcs = VMCS12(address: 0)
        XCTAssertTrue(ExitRouting.wantsMSR(0x1b, write: false, vmcs: vmcs, memory: m))       // no bitmaps: all exit
        vmcs.write(.processorBasedControls, 1 << 28)
        vmcs.write(.msrBitmap, 0x4000)
        XCTAssertFalse(ExitRouting.wantsMSR(0x1b, write: false, vmcs: vmcs, memory: m))
        m.bytes[0x4000 + 0x1b / 8] = 1 << (0x1b % 8)                                        // read, low
        XCTAssertTrue(ExitRouting.wantsMSR(0x1b, write: false, vmcs: vmcs, memory: m))
        XCTAssertFalse(ExitRouting.wantsMSR(0x1b, write: true, vmcs: vmcs, memory: m))
        m.bytes[0x4000 + 3072] = 1                                                          // write, high 0xc0000000
        XCTAssertTrue(ExitRouting.wantsMSR(0xc000_0000, write: true, vmcs: vmcs, memory: m))
        XCTAssertTrue(ExitRouting.wantsMSR(0x4000_0000, write: false, vmcs: vmcs, memory: m)) // outside both ranges
    }

    func testGuestStateRoundTripsThroughVMCS12() {
        var l2 = CPUState()
        l2.rip = 0x10_000c; l2.rflags = 0x202; l2.cr0 = 0x11; l2.cr3 = 0x5000; l2.cr4 = 0x20
        l2.gprs[.rsp] = 0x7000
        l2.cs = SegmentState(selector: 0x10, base: 0, limit: 0xffff_ffff, type: 0xb, db: true, g: true)
        l2.ss = SegmentState(selector: 0x18, base: 0x100, limit: 0xffff_ffff, type: 3, db: true, g: true)
        l2.tr = SegmentState(selector: 0x28, base: 0x9000, limit: 0x67, type: 0xb, s: false)
        l2.ldtr = SegmentState(unusable: true)
        l2.gdtr = TableRegister(base: 0x8000, limit: 0x2f)
        l2.blockingBySTI = true
        var vmcs = VMCS12(address: 0)
        StateTransfer.saveGuestState(l2, into: &vmcs)
        var l1 = CPUState()
        l1.gprs[.rax] = 0x2bad_b002
        l1.cr2 = 0xdead_f000
        let loaded = StateTransfer.guestState(from: vmcs, l1: l1)
        XCTAssertEqual(loaded.cr2, 0xdead_f000, "CR2 is not switched (27.3.2): L2 starts with L1's")
        XCTAssertEqual(loaded.rip, l2.rip)
        XCTAssertEqual(loaded.gprs[.rsp], 0x7000)
        XCTAssertEqual(loaded.gprs[.rax], 0x2bad_b002, "GPRs other than RSP come from L1")
        XCTAssertEqual(loaded.cs, l2.cs)
        XCTAssertEqual(loaded.ss, l2.ss)
        XCTAssertEqual(loaded.tr, l2.tr)
        XCTAssertEqual(loaded.gdtr, l2.gdtr)
        XCTAssertEqual(loaded.cr3, 0x5000)
        XCTAssertTrue(loaded.blockingBySTI)
        XCTAssertEqual(loaded.efer & 0x500, 0, "no IA-32e mode guest: LMA and LME clear")
    }

    func testHostStateAfterExit() {
        var vmcs = VMCS12(address: 0)
        vmcs.write(.hostRIP, 0x20_1000); vmcs.write(.hostRSP, 0x20_8000)
        vmcs.write(.hostCR0, 0x8000_0031); vmcs.write(.hostCR3, 0x1000); vmcs.write(.hostCR4, 0x2020)
        vmcs.write(.hostCSSelector, 0x08); vmcs.write(.hostSSSelector, 0x10); vmcs.write(.hostTRSelector, 0x28)
        vmcs.write(.hostFSBase, 0x4000); vmcs.write(.exitControls, 1 << 9)
        var l2 = CPUState()
        l2.gprs[.rbx] = 42
        l2.cr2 = 0x7777_7000
        var l1 = CPUState()
        l1.cr2 = 0x1000
        let host = StateTransfer.hostState(from: vmcs, l2: l2, l1: l1)
        XCTAssertEqual(host.cr2, 0x7777_7000, "nor at exit (28.5.1): L1 sees L2's last page-fault address")
        XCTAssertEqual(host.rip, 0x20_1000)
        XCTAssertEqual(host.gprs[.rsp], 0x20_8000)
        XCTAssertEqual(host.gprs[.rbx], 42, "VM exits leave GPRs as L2 had them")
        XCTAssertEqual(host.rflags, 0x2)
        XCTAssertEqual(host.cr4, 0x20, "VMXE never reaches the real CR4")
        XCTAssertTrue(host.cs.l)
        XCTAssertEqual(host.efer & 0x500, 0x500)
        XCTAssertEqual(host.fs.base, 0x4000)
        XCTAssertEqual(host.tr.selector, 0x28)
    }

    func testExitInformationIsRecorded() {
        var vmcs = VMCS12(address: 0)
        StateTransfer.recordExit(NestedExit(reason: .eptViolation, qualification: 0x182, guestPhysical: 0xd000_0000,
                                            instructionLength: 0), into: &vmcs)
        XCTAssertEqual(vmcs.read(.exitReason), 48)
        XCTAssertEqual(vmcs.read(.exitQualification), 0x182)
        XCTAssertEqual(vmcs.read(.guestPhysicalAddress), 0xd000_0000)
        XCTAssertEqual(vmcs.read(.idtVectoringInfo), 0, "no event in delivery: bit 31 clear")
    }

    func testExitDuringEventDeliveryRecordsTheEvent() {
        // SDM 25.9.3: vector 7:0, type 10:8, error code valid 11, valid 31.
        XCTAssertEqual(DeliveredEvent(kind: .hardwareException, vector: 14, errorCode: 2).interruptionInformation, 0x8000_0b0e)
        XCTAssertEqual(DeliveredEvent(kind: .externalInterrupt, vector: 0x30).interruptionInformation, 0x8000_0030)
        XCTAssertEqual(DeliveredEvent(kind: .softwareInterrupt, vector: 0x80).interruptionInformation, 0x8000_0480)
        XCTAssertEqual(DeliveredEvent(kind: .softwareException, vector: 3).interruptionInformation, 0x8000_0603)
        XCTAssertEqual(DeliveredEvent(kind: .nmi, vector: 2).interruptionInformation, 0x8000_0202)

        var vmcs = VMCS12(address: 0)
        vmcs.write(.idtVectoringErrorCode, 0x55)
        var exit = NestedExit(reason: .eptViolation, qualification: 0x181, guestPhysical: 0x9000)
        exit.vectoring = DeliveredEvent(kind: .hardwareException, vector: 13, errorCode: 0x18)
        StateTransfer.recordExit(exit, into: &vmcs)
        XCTAssertEqual(vmcs.read(.idtVectoringInfo), 0x8000_0b0d)
        XCTAssertEqual(vmcs.read(.idtVectoringErrorCode), 0x18)
    }

    func testTheVMEntryFieldReadsBackAsTheEvent() {
        // SDM 25.8.3: the error code counts only with bit 11; invalid or
        // reserved-type fields are no event.
        XCTAssertEqual(DeliveredEvent(interruptionInformation: 0x8000_0b0e, errorCode: 6),
                       DeliveredEvent(kind: .hardwareException, vector: 14, errorCode: 6))
        XCTAssertEqual(DeliveredEvent(interruptionInformation: 0x8000_0430, errorCode: 6),
                       DeliveredEvent(kind: .softwareInterrupt, vector: 0x30))
        XCTAssertEqual(DeliveredEvent(interruptionInformation: 0x8000_0501, errorCode: 0)?.kind, .privilegedSoftwareException)
        XCTAssertTrue(DeliveredEvent.Kind.privilegedSoftwareException.isSoftware)
        XCTAssertFalse(DeliveredEvent.Kind.hardwareException.isSoftware)
        XCTAssertNil(DeliveredEvent(interruptionInformation: 0x0000_0b0e, errorCode: 0), "valid bit clear")
        XCTAssertNil(DeliveredEvent(interruptionInformation: 0x8000_0130, errorCode: 0), "type 1 is reserved")
        for info in [UInt32(0x8000_0030), 0x8000_0202, 0x8000_0b0d, 0x8000_0603] {
            XCTAssertEqual(DeliveredEvent(interruptionInformation: info, errorCode: 0)?.interruptionInformation, info)
        }
    }
}
