#if canImport(Glibc)
import Glibc
#endif
import KVM

/// Where guest serial output goes: a file descriptor, buffered per line.
public final class SerialSink {
    private let fd: Int32
    private let ownsFD: Bool
    private var buffer: [UInt8] = []
    private let name: String
    /// The first write error, reported once on stderr; later output is dropped.
    public private(set) var writeError: Int32?

    public init(fd: Int32, owns: Bool = false, name: String = "standard output") {
        self.name = name
        self.fd = fd
        self.ownsFD = owns
        buffer.reserveCapacity(4096)
    }

    /// Opens (creating or truncating) `path` for the output.
    public convenience init(path: String) throws(MonitorError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw MonitorError.io("open serial output \(path)", errno: errno) }
        self.init(fd: fd, owns: true, name: path)
    }

    deinit {
        flush()
        if ownsFD { close(fd) }
    }

    public func put(_ byte: UInt8) {
        buffer.append(byte)
        if byte == 0x0a || buffer.count >= 4096 { flush() }
    }

    public func flush() {
        var done = 0
        while done < buffer.count, writeError == nil {
            let n = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                writeError = n < 0 ? errno : EIO
                // A reader that went away (`terrapin run ... | head`) ends the
                // run as SIGPIPE would, but with the trace finished.
                if writeError == EPIPE { StopRequest.request(SIGPIPE) }
                printError("terrapin: the guest's serial output to \(name) failed: \(String(cString: strerror(writeError ?? EIO))); "
                           + "further output is dropped")
                break
            }
            done += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// A 16550A UART with no interrupts and no input: the transmitter is always
/// empty, so a polling guest never waits. Register map: PC16550D data sheet.
public final class Serial16550: PortDevice {
    public static let com1: ClosedRange<UInt16> = 0x3f8...0x3ff
    private let base: UInt16
    private let sink: SerialSink
    private var ier: UInt8 = 0, lcr: UInt8 = 0, mcr: UInt8 = 0, scr: UInt8 = 0, fcr: UInt8 = 0
    private var dll: UInt8 = 0x0c, dlm: UInt8 = 0   // 9600 baud at reset
    public private(set) var bytesWritten = 0

    public init(base: UInt16 = 0x3f8, sink: SerialSink) {
        self.base = base
        self.sink = sink
    }

    private var dlab: Bool { lcr & 0x80 != 0 }

    public func read(port: UInt16, size: UInt8) -> UInt32 {
        switch port &- base {
        case 0: return UInt32(dlab ? dll : 0)           // RBR: no input ever arrives
        case 1: return UInt32(dlab ? dlm : ier)
        case 2: return fcr & 1 != 0 ? 0xc1 : 0x01       // IIR: no interrupt pending
        case 3: return UInt32(lcr)
        case 4: return UInt32(mcr)
        case 5: return 0x60                             // LSR: THRE | TEMT, no data ready
        case 6: return 0xb0                             // MSR: DCD | DSR | CTS
        case 7: return UInt32(scr)
        default: return 0xff
        }
    }

    public func write(port: UInt16, size: UInt8, value: UInt32) -> DeviceEffect {
        let v = UInt8(truncatingIfNeeded: value)
        switch port &- base {
        case 0:
            if dlab { dll = v } else { sink.put(v); bytesWritten += 1 }
        case 1: if dlab { dlm = v } else { ier = v & 0x0f }
        case 2: fcr = v
        case 3: lcr = v
        case 4: mcr = v & 0x1f
        case 7: scr = v
        default: break                                  // LSR/MSR are read-only
        }
        return .none
    }
}
