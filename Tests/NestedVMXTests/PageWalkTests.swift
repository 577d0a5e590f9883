import XCTest
@testable import NestedVMX

final class PageWalkTests: XCTestCase {
    static let p: UInt64 = 1, rw: UInt64 = 2, us: UInt64 = 4, a: UInt64 = 0x20, d: UInt64 = 0x40, ps: UInt64 = 0x80
    static let xd: UInt64 = 1 << 63
    static let all: UInt64 = p | rw | us

    // 4-level layout: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000.
    static let linear: UInt64 = 1 << 39 | 2 << 30 | 3 << 21 | 4 << 12 | 0x123
    static let pml4e: UInt64 = 0x1000 + 1 * 8, pdpte: UInt64 = 0x2000 + 2 * 8
    static let pde: UInt64 = 0x3000 + 3 * 8, pte: UInt64 = 0x4000 + 4 * 8

    static func longState() -> CPUState {
        var s = CPUState()
        s.cr0 = 0x8001_0011                      // PG, WP, ET, PE
        s.cr4 = 0x20                             // PAE
        s.efer = 0xD00                           // LME, LMA, NXE
        s.cr3 = 0x1000
        s.cs.l = true
        return s
    }

    /// Builds the 4-level tables mapping `linear` to physical 0x10000 with the given flags per level.
    static func build4K(_ f: [UInt64] = [all, all, all, all]) -> ArrayMemory {
        let m = ArrayMemory(size: 0x20_0000)
        _ = m.store(0x2000 | f[0], at: pml4e)
        _ = m.store(0x3000 | f[1], at: pdpte)
        _ = m.store(0x4000 | f[2], at: pde)
        _ = m.store(0x10000 | f[3], at: pte)
        return m
    }

    static func pf(_ code: UInt32, _ address: UInt64 = linear) -> Result<UInt64, X86Exception> {
        .failure(.pageFault(errorCode: code, address: address))
    }

    let read = MemoryAccess()
    let write = MemoryAccess(write: true)
    let userRead = MemoryAccess(user: true)
    let userWrite = MemoryAccess(write: true, user: true)
    let fetch = MemoryAccess(fetch: true)

    // MARK: 4-level paging

    func test4KTranslationSetsAccessedAndDirty() {
        let m = Self.build4K()
        let s = Self.longState()
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m), .success(0x10123))
        for e in [Self.pml4e, Self.pdpte, Self.pde, Self.pte] {
            XCTAssertEqual(m.load(UInt64.self, at: e)! & Self.a, Self.a, "accessed at 0x\(String(e, radix: 16))")
        }
        XCTAssertEqual(m.load(UInt64.self, at: Self.pte)! & Self.d, 0, "a read does not set dirty")
        XCTAssertEqual(PageWalker.translate(Self.linear, access: write, state: s, memory: m), .success(0x10123))
        XCTAssertEqual(m.load(UInt64.self, at: Self.pte)! & Self.d, Self.d)
        XCTAssertEqual(m.load(UInt64.self, at: Self.pde)! & Self.d, 0, "dirty only on the final entry")
    }

    func testNoFlagsWhenNotRequested() {
        let m = Self.build4K()
        XCTAssertEqual(PageWalker.translate(Self.linear, access: write, state: Self.longState(), memory: m,
                                            setAccessedDirty: false), .success(0x10123))
        XCTAssertEqual(m.load(UInt64.self, at: Self.pte), 0x10000 | Self.all)
    }

    func test2MiBAnd1GiBPages() {
        let s = Self.longState()
        let m = Self.build4K()
        _ = m.store(0x60_0000 | Self.all | Self.ps, at: Self.pde)
        XCTAssertEqual(PageWalker.translate(Self.linear, access: write, state: s, memory: m),
                       .success(0x60_0000 | (Self.linear & 0x1F_FFFF)))
        XCTAssertEqual(m.load(UInt64.self, at: Self.pde)! & (Self.a | Self.d), Self.a | Self.d)
        _ = m.store(0x4000_0000 | Self.all | Self.ps, at: Self.pdpte)
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m),
                       .success(0x4000_0000 | (Self.linear & 0x3FFF_FFFF)))
        // Reserved bits 20:13 of a 2 MiB PDE / 29:13 of a 1 GiB PDPTE.
        _ = m.store(0x4000_0000 | 1 << 13 | Self.all | Self.ps, at: Self.pdpte)
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m), Self.pf(0x9))
    }

    func testNotPresentAtEachLevel() {
        let s = Self.longState()
        for level in 0..<4 {
            var flags = [Self.all, Self.all, Self.all, Self.all]
            flags[level] &= ~Self.p
            let m = Self.build4K(flags)
            XCTAssertEqual(PageWalker.translate(Self.linear, access: userWrite, state: s, memory: m),
                           Self.pf(0x6), "level \(level)")
            XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m),
                           Self.pf(0x0), "level \(level)")
            XCTAssertEqual(PageWalker.translate(Self.linear, access: write, state: s, memory: m),
                           Self.pf(0x2), "level \(level)")
            XCTAssertEqual(m.load(UInt64.self, at: Self.pml4e)! & Self.a, 0, "no flags on a faulting walk")
        }
    }

    func testWriteProtect() {
        var s = Self.longState()
        let m = Self.build4K([Self.all, Self.all, Self.all, Self.p | Self.us])   // read-only PTE
        XCTAssertEqual(PageWalker.translate(Self.linear, access: write, state: s, memory: m), Self.pf(0x3))
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m), .success(0x10123))
        s.cr0 &= ~(1 << 16)                                                       // WP = 0
        XCTAssertEqual(PageWalker.translate(Self.linear, access: write, state: s, memory: m), .success(0x10123))
        XCTAssertEqual(PageWalker.translate(Self.linear, access: userWrite, state: s, memory: m), Self.pf(0x7))
        // A read-only upper level also write-protects.
        let upper = Self.build4K([Self.all, Self.p | Self.us, Self.all, Self.all])
        s.cr0 |= 1 << 16
        XCTAssertEqual(PageWalker.translate(Self.linear, access: write, state: s, memory: upper), Self.pf(0x3))
    }

    func testUserAccessToSupervisorPage() {
        let s = Self.longState()
        let m = Self.build4K([Self.all, Self.all, Self.p | Self.rw, Self.all])   // PDE supervisor-only
        XCTAssertEqual(PageWalker.translate(Self.linear, access: userRead, state: s, memory: m), Self.pf(0x5))
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m), .success(0x10123))
        // Supervisor access to a user page is allowed (SMAP not modelled).
        XCTAssertEqual(PageWalker.translate(Self.linear, access: write, state: s, memory: Self.build4K()),
                       .success(0x10123))
    }

    func testExecuteDisable() {
        var s = Self.longState()
        let m = Self.build4K([Self.all, Self.all, Self.all, Self.all | Self.xd])
        XCTAssertEqual(PageWalker.translate(Self.linear, access: fetch, state: s, memory: m), Self.pf(0x11))
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m), .success(0x10123))
        // I/D is set for any fetch fault with NX enabled, including not-present.
        let np = Self.build4K([Self.all, Self.all, 0, Self.all])
        XCTAssertEqual(PageWalker.translate(Self.linear, access: fetch, state: s, memory: np), Self.pf(0x10))
        // Without EFER.NXE the XD bit is reserved and I/D is clear.
        s.efer &= ~(1 << 11)
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m), Self.pf(0x9))
        XCTAssertEqual(PageWalker.translate(Self.linear, access: fetch, state: s, memory: np), Self.pf(0x0))
    }

    func testReservedBits() {
        let s = Self.longState()
        var m = Self.build4K([Self.all, Self.all, Self.all, Self.all | 1 << 50])   // above MAXPHYADDR 46
        XCTAssertEqual(PageWalker.translate(Self.linear, access: userWrite, state: s, memory: m), Self.pf(0xF))
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m,
                                            physicalAddressBits: 52), .success(0x4_0000_0001_0123))
        m = Self.build4K([Self.all | Self.ps, Self.all, Self.all, Self.all])           // PS in a PML4E
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m), Self.pf(0x9))
        // A table outside RAM reads as all ones: reserved.
        m = Self.build4K()
        _ = m.store(0x10_0000_0000 | Self.all, at: Self.pde)
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m,
                                            physicalAddressBits: 40), Self.pf(0x9))
    }

    func testFiveLevel() {
        var s = Self.longState()
        s.cr4 |= 1 << 12
        s.cr3 = 0x5000                                     // PML5; entry 0 -> PML4 at 0x1000
        let m = Self.build4K()
        _ = m.store(0x1000 | Self.all, at: 0x5000)
        XCTAssertEqual(PageWalker.translate(Self.linear, access: read, state: s, memory: m), .success(0x10123))
        XCTAssertEqual(PageWalker.translate(Self.linear | 1 << 48, access: read, state: s, memory: m),
                       Self.pf(0, Self.linear | 1 << 48))
    }

    // MARK: Other modes

    func testPagingOff() {
        var s = CPUState()
        s.cr0 = 0x11
        XCTAssertEqual(PageWalker.translate(0x1_2345_6789, access: write, state: s, memory: ArrayMemory(size: 16)),
                       .success(0x2345_6789))
    }

    func testPAE() {
        var s = CPUState()
        s.cr0 = 0x8001_0011; s.cr4 = 0x20; s.cr3 = 0x1020
        let m = ArrayMemory(size: 0x10000)
        let la: UInt64 = 2 << 30 | 3 << 21 | 4 << 12 | 0x456
        _ = m.store(UInt64(0x2000 | 1), at: 0x1020 + 2 * 8)      // PDPTE: only P
        _ = m.store(0x3000 | Self.all, at: 0x2000 + 3 * 8)
        _ = m.store(0x5000 | Self.all, at: 0x3000 + 4 * 8)
        XCTAssertEqual(PageWalker.translate(la, access: write, state: s, memory: m), .success(0x5456))
        XCTAssertEqual(m.load(UInt64.self, at: 0x1030), 0x2001, "PAE PDPTEs have no accessed flag")
        XCTAssertEqual(m.load(UInt64.self, at: 0x3020)! & (Self.a | Self.d), Self.a | Self.d)
        // 2 MiB page.
        _ = m.store(0x20_0000 | Self.all | Self.ps, at: 0x2000 + 3 * 8)
        XCTAssertEqual(PageWalker.translate(la, access: read, state: s, memory: m), .success(0x20_0000 | (la & 0x1F_FFFF)))
        // R/W in a PDPTE is reserved; XD is reserved without NXE.
        _ = m.store(UInt64(0x2000 | 3), at: 0x1030)
        XCTAssertEqual(PageWalker.translate(la, access: read, state: s, memory: m), Self.pf(0x9, la))
        _ = m.store(UInt64(0x2001), at: 0x1030)
        _ = m.store(0x20_0000 | Self.all | Self.ps | Self.xd, at: 0x2000 + 3 * 8)
        XCTAssertEqual(PageWalker.translate(la, access: read, state: s, memory: m), Self.pf(0x9, la))
        s.efer = 1 << 11
        XCTAssertEqual(PageWalker.translate(la, access: fetch, state: s, memory: m), Self.pf(0x11, la))
        // Not-present PDPTE.
        XCTAssertEqual(PageWalker.translate(la ^ 1 << 30, access: read, state: s, memory: m), Self.pf(0, la ^ 1 << 30))
    }

    func test32BitPaging() {
        var s = CPUState()
        s.cr0 = 0x8001_0011; s.cr3 = 0x1000
        let m = ArrayMemory(size: 0x10000)
        let la: UInt64 = 0x00C0_5789                             // PDE 3, PTE 5
        _ = m.store(UInt32(0x2000 | 7), at: 0x1000 + 3 * 4)
        _ = m.store(UInt32(0x7000 | 7), at: 0x2000 + 5 * 4)
        XCTAssertEqual(PageWalker.translate(la, access: write, state: s, memory: m), .success(0x7789))
        XCTAssertEqual(m.load(UInt32.self, at: 0x1000 + 3 * 4), 0x2000 | 7 | 0x20)
        XCTAssertEqual(m.load(UInt32.self, at: 0x2000 + 5 * 4), 0x7000 | 7 | 0x60)
        XCTAssertEqual(PageWalker.translate(la + 0x1000, access: userRead, state: s, memory: m), Self.pf(0x4, la + 0x1000))
        // No XD in 32-bit paging: fetches never get I/D without SMEP.
        XCTAssertEqual(PageWalker.translate(la + 0x1000, access: fetch, state: s, memory: m), Self.pf(0x0, la + 0x1000))
        // 4 MiB page with CR4.PSE; PS is ignored without it.
        _ = m.store(UInt32(0x2000 | 0x87), at: 0x1000 + 3 * 4)
        XCTAssertEqual(PageWalker.translate(la, access: read, state: s, memory: m), .success(0x7789))
        s.cr4 = 0x10
        _ = m.store(UInt32(0x0080_0000 | 0x87), at: 0x1000 + 3 * 4)
        XCTAssertEqual(PageWalker.translate(la, access: read, state: s, memory: m), .success(0x0080_5789))
        // PSE-36: PDE bits 20:13 are physical bits 39:32; bit 21 is reserved.
        _ = m.store(UInt32(0x0080_0000 | 1 << 13 | 0x87), at: 0x1000 + 3 * 4)
        XCTAssertEqual(PageWalker.translate(la, access: read, state: s, memory: m), .success(0x1_0080_5789))
        _ = m.store(UInt32(0x0080_0000 | 1 << 21 | 0x87), at: 0x1000 + 3 * 4)
        XCTAssertEqual(PageWalker.translate(la, access: write, state: s, memory: m), Self.pf(0xB, la))
    }

    // MARK: Linear reads and writes

    /// 4-level tables mapping 0x40_0000 -> 0x10000 and 0x40_1000 -> `second` (nil: not present).
    static func twoPages(second: UInt64?) -> ArrayMemory {
        let m = ArrayMemory(size: 0x20_0000)
        _ = m.store(0x2000 | all, at: 0x1000)
        _ = m.store(0x3000 | all, at: 0x2000)
        _ = m.store(0x4000 | all, at: 0x3000 + 2 * 8)
        _ = m.store(0x10000 | all, at: 0x4000)
        if let second { _ = m.store(second | all, at: 0x4008) }
        return m
    }

    func testReadWriteAcrossPages() {
        let s = Self.longState()
        let m = Self.twoPages(second: 0x30000)
        m.bytes[0x10FFE] = 0xAA; m.bytes[0x10FFF] = 0xBB; m.bytes[0x30000] = 0xCC; m.bytes[0x30001] = 0xDD
        XCTAssertEqual(try PageWalker.readLinear(0x40_0FFE, count: 4, access: read, state: s, memory: m).get(),
                       [0xAA, 0xBB, 0xCC, 0xDD])
        XCTAssertNoThrow(try PageWalker.writeLinear(0x40_0FFF, bytes: [1, 2, 3], access: read, state: s, memory: m).get())
        XCTAssertEqual(Array(m.bytes[0x10FFE...0x10FFF]), [0xAA, 1])
        XCTAssertEqual(Array(m.bytes[0x30000...0x30002]), [2, 3, 0])
        XCTAssertEqual(m.load(UInt64.self, at: 0x4008)! & Self.d, Self.d, "write sets dirty on the second page")
    }

    func testSecondPageUnmappedFaultsAndWritesNothing() {
        let s = Self.longState()
        let m = Self.twoPages(second: nil)
        let expected = LinearAccessError.fault(.pageFault(errorCode: 0, address: 0x40_1000))
        XCTAssertEqual(PageWalker.readLinear(0x40_0FFC, count: 8, access: read, state: s, memory: m).failure, expected)
        let before = m.bytes
        let w = PageWalker.writeLinear(0x40_0FFC, bytes: [UInt8](repeating: 0x55, count: 8), access: read,
                                       state: s, memory: m)
        XCTAssertEqual(w.failure, .fault(.pageFault(errorCode: 0x2, address: 0x40_1000)))
        XCTAssertEqual(m.bytes, before, "nothing written, no accessed/dirty flags set")
    }

    func testNotRAM() {
        let s = Self.longState()
        let m = Self.twoPages(second: 0x100_0000)                // beyond the 2 MiB of RAM
        XCTAssertEqual(PageWalker.readLinear(0x40_0FFC, count: 8, access: read, state: s, memory: m).failure,
                       .notRAM(physical: 0x100_0000))
        let before = m.bytes[0x10FFC...0x10FFF]
        XCTAssertEqual(PageWalker.writeLinear(0x40_0FFC, bytes: [9, 9, 9, 9, 9, 9, 9, 9], access: read,
                                              state: s, memory: m).failure, .notRAM(physical: 0x100_0000))
        XCTAssertEqual(m.bytes[0x10FFC...0x10FFF], before)
    }
}

private extension Result {
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
