import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import Monitor

/// The platform devices, driven directly through their port interfaces.
final class DeviceTests: XCTestCase {
    // MARK: 16550 UART (PC16550D data sheet, register map)

    /// A pipe whose read end is non-blocking, so a missing write fails rather than hangs.
    func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        return (fds[0], fds[1])
    }

    func drain(_ fd: Int32) -> String {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
    }

    func testSerialTransmitsToSinkAndLineStatusIsAlwaysEmpty() throws {
        let p = try makePipe()
        defer { close(p.read); close(p.write) }
        let sink = SerialSink(fd: p.write)
        let uart = Serial16550(sink: sink)
        XCTAssertEqual(uart.read(port: 0x3fd, size: 1), 0x60)           // LSR: THRE | TEMT
        for c in "hi\n".utf8 { _ = uart.write(port: 0x3f8, size: 1, value: UInt32(c)) }
        XCTAssertEqual(drain(p.read), "hi\n")                            // a newline flushes the line
        for c in "abc".utf8 { _ = uart.write(port: 0x3f8, size: 1, value: UInt32(c)) }
        XCTAssertEqual(drain(p.read), "")                                // buffered until flush
        sink.flush()
        XCTAssertEqual(drain(p.read), "abc")
        XCTAssertEqual(uart.bytesWritten, 6)
    }

    func testSerialDLABSelectsDivisorLatches() throws {
        let p = try makePipe()
        defer { close(p.read); close(p.write) }
        let sink = SerialSink(fd: p.write)
        let uart = Serial16550(sink: sink)
        _ = uart.write(port: 0x3f9, size: 1, value: 0x0f)               // IER
        _ = uart.write(port: 0x3fb, size: 1, value: 0x83)               // LCR: DLAB, 8N1
        XCTAssertEqual(uart.read(port: 0x3f8, size: 1), 0x0c)           // DLL at reset: 9600 baud
        _ = uart.write(port: 0x3f8, size: 1, value: 0x01)               // DLL = 1 (115200)
        _ = uart.write(port: 0x3f9, size: 1, value: 0x00)               // DLM = 0
        XCTAssertEqual(uart.read(port: 0x3f8, size: 1), 0x01)
        XCTAssertEqual(uart.read(port: 0x3f9, size: 1), 0x00)
        XCTAssertEqual(uart.read(port: 0x3fb, size: 1), 0x83)
        _ = uart.write(port: 0x3fb, size: 1, value: 0x03)               // DLAB off
        XCTAssertEqual(uart.read(port: 0x3f9, size: 1), 0x0f)           // IER untouched by the DLM write
        XCTAssertEqual(uart.read(port: 0x3f8, size: 1), 0)              // RBR: no input
        _ = uart.write(port: 0x3f8, size: 1, value: UInt32(UInt8(ascii: "X")))
        sink.flush()
        XCTAssertEqual(drain(p.read), "X")                              // the divisor writes printed nothing
        XCTAssertEqual(uart.bytesWritten, 1)
        _ = uart.write(port: 0x3ff, size: 1, value: 0x5a)               // scratch register
        XCTAssertEqual(uart.read(port: 0x3ff, size: 1), 0x5a)
        _ = uart.write(port: 0x3fd, size: 1, value: 0)                  // LSR is read-only
        XCTAssertEqual(uart.read(port: 0x3fd, size: 1), 0x60)
    }

    // MARK: isa-debug-exit and run outcomes

    func testDebugExitStopsWithOddStatus() {
        let dev = DebugExitDevice()
        for (value, status) in [(UInt32(0), Int32(1)), (1, 3), (0x10, 33), (0x2a, 85), (0x7f, 255)] {
            let effect = dev.write(port: 0xf4, size: 1, value: value)
            XCTAssertEqual(effect, .stop(.guestExit(value: value)))
            XCTAssertEqual(RunOutcome.guestExit(value: value).exitStatus, status)
        }
        XCTAssertEqual(dev.read(port: 0xf4, size: 4), 0xffff_ffff)
    }

    func testMonitorStatusesAreEvenAndDistinct() {
        let monitor: [RunOutcome] = [.tripleFault, .deadHalt(reason: "x"), .unhandledExit("y")]
        XCTAssertEqual(monitor.map(\.exitStatus), [80, 82, 84])
        XCTAssertTrue(monitor.allSatisfy { $0.exitStatus % 2 == 0 })
        for v in UInt32(0)...300 { XCTAssertEqual(RunOutcome.guestExit(value: v).exitStatus % 2, 1) }
        for s in [RunOutcome.usageStatus, RunOutcome.badImageStatus, RunOutcome.hostFailureStatus] {
            XCTAssertEqual(s % 2, 0)
            XCTAssertFalse(monitor.map(\.exitStatus).contains(s))
        }
    }

    // MARK: 8259A PIC (Intel 8259A data sheet: ICW1-ICW4, OCW1)

    func testPICCascadedInitialisationThenMask() {
        let pic = PIC8259(base: 0x20)
        XCTAssertEqual(pic.read(port: 0x21, size: 1), 0xff)             // all masked at reset
        _ = pic.write(port: 0x20, size: 1, value: 0x11)                 // ICW1: edge, cascade, ICW4 needed
        _ = pic.write(port: 0x21, size: 1, value: 0x20)                 // ICW2: vector base 0x20
        _ = pic.write(port: 0x21, size: 1, value: 0x04)                 // ICW3: slave on IR2
        _ = pic.write(port: 0x21, size: 1, value: 0x01)                 // ICW4: 8086 mode
        XCTAssertEqual(pic.vectorBase, 0x20)
        XCTAssertEqual(pic.mask, 0)                                     // ICW1 clears the mask
        _ = pic.write(port: 0x21, size: 1, value: 0xfb)                 // OCW1
        XCTAssertEqual(pic.read(port: 0x21, size: 1), 0xfb)
        XCTAssertEqual(pic.read(port: 0x20, size: 1), 0)                // IRR: nothing pending
        _ = pic.write(port: 0x20, size: 1, value: 0x20)                 // OCW2: EOI, not an ICW1
        XCTAssertEqual(pic.read(port: 0x21, size: 1), 0xfb)
    }

    /// ICW1 bit 1 (SNGL): no ICW3 follows ICW2; ICW1 bit 0 clear: no ICW4.
    func testPICSingleModeAndNoICW4() {
        let single = PIC8259(base: 0xa0)
        _ = single.write(port: 0xa0, size: 1, value: 0x13)              // ICW1: single, ICW4 needed
        _ = single.write(port: 0xa1, size: 1, value: 0x28 | 0x5)        // ICW2: low 3 bits ignored
        _ = single.write(port: 0xa1, size: 1, value: 0x01)              // ICW4
        _ = single.write(port: 0xa1, size: 1, value: 0xfe)              // OCW1
        XCTAssertEqual(single.vectorBase, 0x28)
        XCTAssertEqual(single.mask, 0xfe)

        let noICW4 = PIC8259(base: 0x20)
        _ = noICW4.write(port: 0x20, size: 1, value: 0x10)              // ICW1: cascade, no ICW4
        _ = noICW4.write(port: 0x21, size: 1, value: 0x30)              // ICW2
        _ = noICW4.write(port: 0x21, size: 1, value: 0x04)              // ICW3
        _ = noICW4.write(port: 0x21, size: 1, value: 0x7f)              // OCW1
        XCTAssertEqual(noICW4.vectorBase, 0x30)
        XCTAssertEqual(noICW4.mask, 0x7f)
    }

    // MARK: POST code, PCI configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2)

    func testPostCodePortKeepsLastByte() {
        let post = PostCodePort()
        _ = post.write(port: 0x80, size: 1, value: 0x12)
        _ = post.write(port: 0x80, size: 2, value: 0x1234)
        XCTAssertEqual(post.lastValue, 0x34)
        XCTAssertEqual(post.writes, 2)
        XCTAssertEqual(post.read(port: 0x80, size: 1), 0x34)
    }

    // MARK: The work-report port (Guests/lib/include/guest.h, report_iterations)

    func testWorkReportPortCommitsOnTheLowHalf() {
        let port = WorkReportPort()
        XCTAssertNil(port.iterations, "nothing reported yet")
        _ = port.write(port: 0x5a4, size: 4, value: 0x2)                // bits 63:32, latched only
        XCTAssertNil(port.iterations)
        XCTAssertEqual(port.write(port: 0x5a0, size: 4, value: 0x8000_0001), .none)
        XCTAssertEqual(port.iterations, 0x2_8000_0001)
        _ = port.write(port: 0x5a0, size: 4, value: 300)                // the latch was cleared by the commit
        XCTAssertEqual(port.iterations, 300)
        _ = port.write(port: 0x5a0, size: 1, value: 7)                  // only 32-bit writes count
        _ = port.write(port: 0x5a2, size: 4, value: 7)
        _ = port.write(port: 0x5a4, size: 2, value: 7)
        _ = port.write(port: 0x5a0, size: 4, value: 5)
        XCTAssertEqual(port.iterations, 5, "a later report replaces an earlier one; narrow writes are dropped")
        XCTAssertEqual(port.read(port: 0x5a0, size: 1), 0xff)
        XCTAssertEqual(port.read(port: 0x5a0, size: 4), 0xffff_ffff)
    }

    func testPCIConfigAddressLatchAndEmptyBus() {
        let pci = PCIConfigSpace()
        _ = pci.write(port: 0xcf8, size: 4, value: 0xff00_0803)         // reserved bits 30:24 and 1:0 dropped
        XCTAssertEqual(pci.read(port: 0xcf8, size: 4), 0x8000_0800)
        XCTAssertEqual(pci.address, 0x8000_0800)
        _ = pci.write(port: 0xcf8, size: 1, value: 0)                   // byte writes do not touch the latch
        XCTAssertEqual(pci.address, 0x8000_0800)
        _ = pci.write(port: 0xcfc, size: 4, value: 0)                   // data writes are dropped
        XCTAssertEqual(pci.read(port: 0xcfc, size: 4), 0xffff_ffff)
        XCTAssertEqual(pci.read(port: 0xcfe, size: 2), 0xffff)
        XCTAssertEqual(pci.read(port: 0xcff, size: 1), 0xff)
    }

    // MARK: fw_cfg (QEMU docs/specs/fw_cfg.rst, traditional interface)

    func fwRead(_ fw: FwCfg, key: UInt16, count: Int) -> [UInt8] {
        _ = fw.write(port: 0x510, size: 2, value: UInt32(key))
        return (0..<count).map { _ in UInt8(fw.read(port: 0x511, size: 1)) }
    }

    func testFwCfgItems() {
        let fw = FwCfg(cpuCount: 3, ramSize: 0x1_2345_6000)
        XCTAssertEqual(fwRead(fw, key: 0x00, count: 4), Array("QEMU".utf8))
        XCTAssertEqual(fwRead(fw, key: 0x05, count: 2), [3, 0])                   // CPU count, LE16
        XCTAssertEqual(fwRead(fw, key: 0x03, count: 8), [0x00, 0x60, 0x45, 0x23, 0x01, 0, 0, 0])
        XCTAssertEqual(fwRead(fw, key: 0x01, count: 4), [1, 0, 0, 0])             // ID: no DMA
        XCTAssertEqual(fwRead(fw, key: 0x1234, count: 4), [0, 0, 0, 0])           // unknown key
        XCTAssertEqual(fw.read(port: 0x510, size: 2), 0)                          // selector is write-only
    }

    func testFwCfgReadsPastEndAndReselect() {
        let fw = FwCfg(cpuCount: 1, ramSize: 1 << 28)
        XCTAssertEqual(fwRead(fw, key: 0x00, count: 7), Array("QEMU".utf8) + [0, 0, 0])
        _ = fw.write(port: 0x510, size: 2, value: 0)                    // reselecting rewinds
        XCTAssertEqual(fw.read(port: 0x511, size: 1), UInt32(UInt8(ascii: "Q")))
        XCTAssertEqual(fw.read(port: 0x511, size: 1), UInt32(UInt8(ascii: "E")))
        _ = fw.write(port: 0x511, size: 1, value: 0x99)                 // data writes ignored
        XCTAssertEqual(fw.read(port: 0x511, size: 1), UInt32(UInt8(ascii: "M")))
        _ = fw.write(port: 0x510, size: 2, value: 0)
        XCTAssertEqual(fw.read(port: 0x511, size: 4), 0x554D_4551)       // "QEMU" little-endian
    }

    // MARK: Buses

    func testPortBusRegistrationAndLookup() throws {
        var bus = PortBus()
        let a = PostCodePort(), b = PCIConfigSpace(), c = DebugExitDevice()
        try bus.register(a, ports: 0x80...0x80)
        try bus.register(b, ports: 0xcf8...0xcff)
        XCTAssertThrowsError(try bus.register(c, ports: 0xcf0...0xcf8)) { error in
            XCTAssertEqual(error as? PortBus.RegistrationError, .overlap(port: 0xcf8))
        }
        XCTAssertNil(bus.device(at: 0xcf0))                             // the failed registration claimed nothing
        XCTAssertTrue(bus.device(at: 0x80) === a)
        XCTAssertTrue(bus.device(at: 0xcf8) === b)
        XCTAssertTrue(bus.device(at: 0xcff) === b)
        XCTAssertNil(bus.device(at: 0xd00))
        XCTAssertNil(bus.device(at: 0x7f))
        try bus.register(c, ports: 0xcf0...0xcf7)                       // adjacent is fine
        XCTAssertTrue(bus.device(at: 0xcf7) === c)
    }

    func testPortBusIsFullAfter255Devices() throws {
        var bus = PortBus()
        for i in 0..<255 { try bus.register(PostCodePort(), ports: UInt16(i)...UInt16(i)) }
        XCTAssertThrowsError(try bus.register(PostCodePort(), ports: 1000...1000)) { error in
            XCTAssertEqual(error as? PortBus.RegistrationError, .full)
        }
        XCTAssertNotNil(bus.device(at: 254))
    }

    func testMMIOBusOverlapAndOffsets() throws {
        var bus = MMIOBus()
        let apic = LocalAPIC(now: { 0 }), other = LocalAPIC(now: { 0 })
        try bus.register(apic, base: 0xfee0_0000, size: 0x1000)
        XCTAssertThrowsError(try bus.register(other, base: 0xfee0_0ff0, size: 0x20)) { error in
            XCTAssertEqual(error as? MMIOBus.RegistrationError, .overlap(base: 0xfee0_0ff0))
        }
        XCTAssertThrowsError(try bus.register(other, base: 0xfed0_0000, size: 0x20_0000))   // covers it entirely
        try bus.register(other, base: 0xfee0_1000, size: 0x1000)        // adjacent
        let hit = try XCTUnwrap(bus.device(at: 0xfee0_0320))
        XCTAssertTrue(hit.device === apic)
        XCTAssertEqual(hit.offset, 0x320)
        XCTAssertEqual(bus.device(at: 0xfee0_0fff)?.offset, 0xfff)
        let second = try XCTUnwrap(bus.device(at: 0xfee0_1004))
        XCTAssertTrue(second.device === other)
        XCTAssertEqual(second.offset, 4)
        XCTAssertNil(bus.device(at: 0xfee0_2000))
        XCTAssertNil(bus.device(at: 0xfedf_ffff))
        XCTAssertEqual(bus.regions.count, 2)
    }
}
