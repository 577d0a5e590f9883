/// One 8259A programmable interrupt controller. Nothing behind it raises an
/// IRQ on this platform, so it only keeps state: the guest can initialise it
/// (ICW1-ICW4), mask lines (OCW1) and read the mask back, which is what a
/// guest does before it moves to the local APIC. Register semantics: Intel
/// 8259A data sheet, "Operation command words".
public final class PIC8259: PortDevice {
    public static let master: ClosedRange<UInt16> = 0x20...0x21
    public static let slave: ClosedRange<UInt16> = 0xa0...0xa1

    private let base: UInt16
    public private(set) var mask: UInt8 = 0xff
    public private(set) var vectorBase: UInt8 = 0
    private var expectedICW = 0        // 0: none; 2, 3, 4: next data write is that ICW
    private var needsICW4 = false
    private var singleMode = false     // ICW1 SNGL: no ICW3 follows ICW2
    private var readISR = false

    public init(base: UInt16) { self.base = base }

    public func read(port: UInt16, size: UInt8) -> UInt32 {
        if port == base { return 0 }   // IRR or ISR (per OCW3): nothing is ever pending
        return UInt32(mask)
    }

    public func write(port: UInt16, size: UInt8, value: UInt32) -> DeviceEffect {
        let v = UInt8(truncatingIfNeeded: value)
        if port == base {
            if v & 0x10 != 0 {         // ICW1 starts initialisation
                expectedICW = 2
                needsICW4 = v & 0x01 != 0
                singleMode = v & 0x02 != 0
                mask = 0
            } else if v & 0x18 == 0x08 {
                readISR = v & 0x03 == 0x03   // OCW3
            }                          // OCW2 (EOI and rotation): nothing in service
            return .none
        }
        switch expectedICW {
        case 2: vectorBase = v & 0xf8; expectedICW = singleMode ? (needsICW4 ? 4 : 0) : 3
        case 3: expectedICW = needsICW4 ? 4 : 0
        case 4: expectedICW = 0
        default: mask = v              // OCW1
        }
        return .none
    }
}
