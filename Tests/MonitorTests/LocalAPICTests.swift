import XCTest
@testable import Monitor

/// The userspace xAPIC against a fake clock (Intel SDM Vol. 3A, chapter 11).
final class LocalAPICTests: XCTestCase {
    enum Reg {
        static let tpr: UInt64 = 0x80, ppr: UInt64 = 0xa0, eoi: UInt64 = 0xb0, svr: UInt64 = 0xf0
        static let isr: UInt64 = 0x100, irr: UInt64 = 0x200, esr: UInt64 = 0x280, cmci: UInt64 = 0x2f0
        static let icrLow: UInt64 = 0x300, icrHigh: UInt64 = 0x310, lvtTimer: UInt64 = 0x320, lint0: UInt64 = 0x350
        static let initialCount: UInt64 = 0x380, currentCount: UInt64 = 0x390, divide: UInt64 = 0x3e0
    }

    var clock = FakeClock()
    var apic: LocalAPIC!

    override func setUp() {
        clock = FakeClock()
        let c = clock
        apic = LocalAPIC(now: { c.time })
    }

    func w(_ offset: UInt64, _ value: UInt32) { XCTAssertEqual(apic.write(offset: offset, size: 4, value: UInt64(value)), .none) }
    func r(_ offset: UInt64) -> UInt32 { UInt32(apic.read(offset: offset, size: 4)) }
    /// Whether `vector`'s bit is set in the 256-bit ISR or IRR (SDM 11.8.4, Figure 11-20).
    func bit(_ bank: UInt64, _ vector: UInt8) -> Bool { r(bank + 16 * UInt64(vector / 32)) & (1 << UInt32(vector % 32)) != 0 }

    func enable() { w(Reg.svr, 0x1ff) }                                 // SVR: APIC enabled, spurious 0xff

    // MARK: Timer (SDM 11.5.4)

    func testOneShotTimerRaisesAtDeadlineAndEOIClearsISR() {
        enable()
        w(Reg.lvtTimer, 0x40)                                           // one-shot, vector 0x40, unmasked
        w(Reg.divide, 0xb)                                              // divide by 1
        clock.time = 1000
        w(Reg.initialCount, 100)
        XCTAssertEqual(apic.timerDeadline, 1100)
        XCTAssertFalse(apic.updateTimer(at: 1099))
        XCTAssertNil(apic.deliverableVector)
        XCTAssertFalse(bit(Reg.irr, 0x40))
        XCTAssertTrue(apic.updateTimer(at: 1100))
        XCTAssertEqual(apic.deliverableVector, 0x40)
        XCTAssertTrue(bit(Reg.irr, 0x40))
        XCTAssertNil(apic.timerDeadline)                                // one-shot: disarmed
        XCTAssertFalse(apic.updateTimer(at: 5000))

        apic.acknowledge(0x40)                                          // SDM 11.8.4: IRR -> ISR
        XCTAssertFalse(bit(Reg.irr, 0x40))
        XCTAssertTrue(bit(Reg.isr, 0x40))
        XCTAssertEqual(r(Reg.isr + 0x20), 1)                            // ISR bits 64-95: vector 0x40 is bit 0
        XCTAssertNil(apic.deliverableVector)
        w(Reg.eoi, 0)                                                   // SDM 11.8.5
        XCTAssertFalse(bit(Reg.isr, 0x40))
        XCTAssertEqual(r(Reg.ppr), 0)
    }

    func testPeriodicTimerRearms() {
        enable()
        w(Reg.lvtTimer, 0x40 | 1 << 17)                                 // periodic
        w(Reg.divide, 0xb)
        w(Reg.initialCount, 100)
        XCTAssertEqual(apic.timerDeadline, 100)
        XCTAssertTrue(apic.updateTimer(at: 100))
        XCTAssertEqual(apic.timerDeadline, 200)
        XCTAssertEqual(apic.deliverableVector, 0x40)
        apic.acknowledge(0x40); w(Reg.eoi, 0)
        // Checked late: the next period counts from the check, with no burst of catch-up ticks.
        XCTAssertTrue(apic.updateTimer(at: 250))
        XCTAssertEqual(apic.timerDeadline, 350)
        XCTAssertEqual(apic.deliverableVector, 0x40)
        w(Reg.initialCount, 0)                                          // writing 0 stops the timer
        XCTAssertNil(apic.timerDeadline)
    }

    func testMaskedTimerDoesNotRaise() {
        enable()
        w(Reg.lvtTimer, 0x40 | 1 << 16)
        w(Reg.divide, 0xb)
        w(Reg.initialCount, 10)
        XCTAssertTrue(apic.updateTimer(at: 10))
        XCTAssertNil(apic.deliverableVector)
        XCTAssertFalse(apic.hasPendingInterrupt)
    }

    /// SDM 11.5.4, Figure 11-10: divide configuration bits 3,1:0.
    func testDivideConfigurationSetsTickLength() {
        enable()
        w(Reg.lvtTimer, 0x40)
        for (config, divisor) in [(UInt32(0x0), UInt64(2)), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64),
                                  (0xa, 128), (0xb, 1)] {
            w(Reg.divide, config)
            XCTAssertEqual(r(Reg.divide), config)
            clock.time = 5000
            w(Reg.initialCount, 100)
            XCTAssertEqual(apic.timerDeadline, 5000 + 100 * divisor, "divide config \(config)")
        }
        w(Reg.divide, 0xff)
        XCTAssertEqual(r(Reg.divide), 0xb)                              // reserved bits read as 0
    }

    func testCurrentCountFollowsTheClock() {
        enable()
        w(Reg.lvtTimer, 0x40)
        w(Reg.divide, 0x0)                                              // divide by 2: 2 ns a tick
        w(Reg.initialCount, 100)
        XCTAssertEqual(r(Reg.initialCount), 100)
        XCTAssertEqual(r(Reg.currentCount), 100)
        clock.time = 50
        XCTAssertEqual(r(Reg.currentCount), 75)
        clock.time = 199
        XCTAssertEqual(r(Reg.currentCount), 0)
        clock.time = 400
        XCTAssertEqual(r(Reg.currentCount), 0)
        w(Reg.currentCount, 1234)                                       // read-only
        XCTAssertEqual(r(Reg.currentCount), 0)
    }

    // MARK: Priorities (SDM 11.8.3)

    func testTaskPriorityMasksLowerAndEqualClasses() {
        enable()
        apic.raise(0x40)
        w(Reg.tpr, 0x50)
        XCTAssertEqual(r(Reg.tpr), 0x50)
        XCTAssertEqual(r(Reg.ppr), 0x50)
        XCTAssertNil(apic.deliverableVector)
        w(Reg.tpr, 0x40)                                                // same class still blocks
        XCTAssertNil(apic.deliverableVector)
        w(Reg.tpr, 0x3f)
        XCTAssertEqual(apic.deliverableVector, 0x40)
        w(Reg.tpr, 0x50)
        apic.raise(0x60)
        XCTAssertEqual(apic.deliverableVector, 0x60)
        XCTAssertTrue(apic.hasPendingInterrupt)
    }

    func testInServiceVectorBlocksSameAndLowerClassUntilEOI() {
        enable()
        apic.raise(0x40)
        apic.acknowledge(0x40)
        XCTAssertEqual(r(Reg.ppr), 0x40)
        apic.raise(0x45)
        apic.raise(0x30)
        XCTAssertNil(apic.deliverableVector)
        apic.raise(0x51)
        XCTAssertEqual(apic.deliverableVector, 0x51)                    // higher class preempts
        apic.acknowledge(0x51)
        XCTAssertNil(apic.deliverableVector)
        w(Reg.eoi, 0)                                                   // EOI retires the highest: 0x51
        XCTAssertTrue(bit(Reg.isr, 0x40))
        XCTAssertFalse(bit(Reg.isr, 0x51))
        XCTAssertNil(apic.deliverableVector)
        w(Reg.eoi, 0)
        XCTAssertEqual(apic.deliverableVector, 0x45)
        w(Reg.tpr, 0x23)
        XCTAssertEqual(r(Reg.ppr), 0x23)                                // TPR class >= ISR class: PPR = TPR
        apic.acknowledge(0x45)
        XCTAssertEqual(r(Reg.ppr), 0x40)                                // ISR class higher: its class, low nibble 0
    }

    // MARK: IPIs and errors (SDM 11.6.1, 11.5.3)

    func testSelfIPI() {
        enable()
        w(Reg.icrLow, 0x41 | 1 << 18)                                   // shorthand "self", fixed
        XCTAssertEqual(apic.deliverableVector, 0x41)
        XCTAssertEqual(r(Reg.icrLow) & (1 << 12), 0)                    // delivery status: idle
        w(Reg.icrLow, 0x90 | 3 << 18)                                   // all excluding self: nobody here
        w(Reg.icrLow, 0x91 | 4 << 8 | 1 << 18)                          // NMI delivery mode: unsupported
        XCTAssertEqual(apic.deliverableVector, 0x41)
        w(Reg.icrHigh, 0)                                               // physical destination 0: this APIC
        w(Reg.icrLow, 0x92)
        XCTAssertEqual(apic.deliverableVector, 0x92)
        w(Reg.icrHigh, 0x0300_0000)                                     // another APIC ID: not us
        XCTAssertEqual(r(Reg.icrHigh), 0x0300_0000)
        w(Reg.icrLow, 0xa0)
        XCTAssertEqual(apic.deliverableVector, 0x92)
    }

    /// SDM 11.5.3: vectors 0-15 are illegal (ESR bit 6); the ESR shows what was
    /// logged before the last write to it, so software writes, then reads.
    func testIllegalVectorsSetESRAndAreNotRaised() {
        enable()
        apic.raise(5)
        XCTAssertFalse(apic.hasPendingInterrupt)
        w(Reg.esr, 0)
        XCTAssertEqual(r(Reg.esr) & 0x40, 0x40)
        w(Reg.esr, 0)
        XCTAssertEqual(r(Reg.esr), 0)                                   // nothing new since
        w(Reg.icrLow, 0x03 | 1 << 18)                                   // self-IPI with vector 3
        XCTAssertFalse(apic.hasPendingInterrupt)
        w(Reg.esr, 0)
        XCTAssertNotEqual(r(Reg.esr) & 0x40, 0)
        w(Reg.lvtTimer, 0x0f)                                           // timer with an illegal vector
        w(Reg.divide, 0xb)
        w(Reg.esr, 0)
        w(Reg.initialCount, 1)
        apic.updateTimer(at: 1)
        XCTAssertFalse(apic.hasPendingInterrupt)
        w(Reg.esr, 0)
        XCTAssertNotEqual(r(Reg.esr) & 0x40, 0)
    }

    // MARK: IA32_APIC_BASE (SDM 11.4.4)

    func testBaseMSRWrites() {
        XCTAssertEqual(apic.baseMSR, 0xfee0_0900)                       // base, EN, BSP
        XCTAssertFalse(apic.writeBaseMSR(0xfee0_0800 | 1 << 10))        // x2APIC enable
        XCTAssertFalse(apic.writeBaseMSR(0xfed0_0800))                  // relocation
        XCTAssertFalse(apic.writeBaseMSR(0xfee0_0801))                  // reserved bit 0
        XCTAssertFalse(apic.writeBaseMSR(0xfee0_0a00))                  // reserved bit 9
        XCTAssertFalse(apic.writeBaseMSR(0xfee0_0800 | 1 << 63))        // above MAXPHYADDR
        XCTAssertEqual(apic.baseMSR, 0xfee0_0900)                       // rejected writes change nothing

        enable()
        apic.raise(0x40)
        XCTAssertTrue(apic.writeBaseMSR(0xfee0_0000))                   // global disable
        XCTAssertEqual(apic.baseMSR, 0xfee0_0100)                       // BSP is read-only
        XCTAssertNil(apic.deliverableVector)
        XCTAssertTrue(apic.writeBaseMSR(0xfee0_0800))                   // re-enable
        XCTAssertEqual(apic.baseMSR, 0xfee0_0900)
        XCTAssertTrue(apic.writeBaseMSR(0xfee0_0900))                   // writing BSP back is accepted
    }

    // MARK: Software enable (SDM 11.4.7.2)

    func testSoftwareDisabledAPICMasksLVTsAndDeliversNothing() {
        XCTAssertEqual(r(Reg.svr), 0xff)                                // reset: software-disabled
        w(Reg.lvtTimer, 0x40)
        XCTAssertEqual(r(Reg.lvtTimer), 0x1_0040)                       // the mask cannot be cleared
        w(Reg.cmci, 0x41)
        XCTAssertEqual(r(Reg.cmci), 0x1_0041)
        w(Reg.cmci, 0xffff_ffff)
        XCTAssertEqual(r(Reg.cmci), 0x1_07ff)                           // reserved bits stay 0
        apic.raise(0x50)
        XCTAssertNil(apic.deliverableVector)
        XCTAssertTrue(apic.hasPendingInterrupt)

        enable()
        XCTAssertEqual(apic.deliverableVector, 0x50)
        XCTAssertEqual(r(Reg.lvtTimer), 0x1_0040)                       // still masked until rewritten
        w(Reg.lvtTimer, 0x40)
        w(Reg.lint0, 0x700)                                             // ExtINT, unmasked
        XCTAssertEqual(r(Reg.lvtTimer), 0x40)
        XCTAssertEqual(r(Reg.lint0), 0x700)
        w(Reg.svr, 0x0ff)                                               // disable again: every LVT masked
        XCTAssertEqual(r(Reg.lvtTimer), 0x1_0040)
        XCTAssertEqual(r(Reg.lint0), 0x1_0700)
        XCTAssertNil(apic.deliverableVector)
    }

    // MARK: Access rules (SDM 11.4.1: 32-bit aligned accesses only)

    func testUnalignedAndNarrowAccessesAreIgnored() {
        enable()
        w(Reg.tpr, 0x20)
        XCTAssertEqual(apic.read(offset: Reg.tpr, size: 2), 0)
        XCTAssertEqual(apic.read(offset: Reg.tpr, size: 8), 0)
        XCTAssertEqual(apic.read(offset: Reg.tpr + 4, size: 4), 0)
        XCTAssertEqual(apic.read(offset: Reg.svr + 1, size: 4), 0)
        XCTAssertEqual(apic.write(offset: Reg.tpr, size: 1, value: 0x50), .none)
        XCTAssertEqual(apic.write(offset: Reg.tpr + 1, size: 4, value: 0x50), .none)
        XCTAssertEqual(apic.write(offset: Reg.tpr, size: 8, value: 0x50), .none)
        XCTAssertEqual(r(Reg.tpr), 0x20)
        XCTAssertEqual(r(0x30), 0x0005_0014)                            // version: 0x14, max LVT 5
    }
}
