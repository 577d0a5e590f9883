import KVM

/// The Multiboot v1 header a kernel carries in its first 8 KiB (Multiboot
/// Specification 0.6.96, section 3.1).
public struct MultibootHeader: Equatable, Sendable {
    public static let magic: UInt32 = 0x1BAD_B002
    /// What the loader leaves in EAX (section 3.2).
    public static let bootloaderMagic: UInt32 = 0x2BAD_B002
    public static let searchLimit = 8192

    public var offset: Int
    public var flags: UInt32
    /// The a.out-kludge address fields (flag bit 16).
    public var headerAddress: UInt32 = 0, loadAddress: UInt32 = 0, loadEndAddress: UInt32 = 0
    public var bssEndAddress: UInt32 = 0, entryAddress: UInt32 = 0

    public static let pageAlignModules: UInt32 = 1 << 0
    public static let wantsMemoryInfo: UInt32 = 1 << 1
    public static let wantsVideoMode: UInt32 = 1 << 2
    public static let hasAddresses: UInt32 = 1 << 16

    /// Finds and validates the header. A kernel that needs a feature we do not
    /// know (bits 3-15) must not be booted (section 3.1.2).
    public static func find(in bytes: [UInt8], path: String) throws(MonitorError) -> MultibootHeader {
        func word(_ at: Int) -> UInt32 {
            guard at + 4 <= bytes.count else { return 0 }
            return UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        }
        var at = 0
        var badChecksumAt: Int?
        while at + 12 <= min(bytes.count, searchLimit) {
            if word(at) == magic {
                let flags = word(at + 4)
                // A magic word without a matching checksum is not a header (GRUB and QEMU keep looking).
                guard magic &+ flags &+ word(at + 8) == 0 else {
                    if badChecksumAt == nil { badChecksumAt = at }
                    at += 4
                    continue
                }
                let unknown = flags & 0xfff8
                guard unknown == 0 else {
                    throw .badImage(path: path, reason: "multiboot header requires unsupported features (flags \(hex(flags)))")
                }
                var h = MultibootHeader(offset: at, flags: flags)
                if flags & hasAddresses != 0 {
                    guard at + 32 <= bytes.count else {
                        throw .badImage(path: path, reason: "multiboot header at offset \(at) is truncated")
                    }
                    h.headerAddress = word(at + 12); h.loadAddress = word(at + 16); h.loadEndAddress = word(at + 20)
                    h.bssEndAddress = word(at + 24); h.entryAddress = word(at + 28)
                }
                return h
            }
            at += 4
        }
        if let bad = badChecksumAt {
            throw .badImage(path: path, reason: "multiboot header at offset \(bad) has a bad checksum")
        }
        throw .badImage(path: path, reason: "no multiboot header in the first \(searchLimit) bytes")
    }
}

/// A module to hand the kernel: its bytes and its command-line string.
public struct BootModule: Sendable {
    public var bytes: [UInt8]
    public var commandLine: String
    public init(bytes: [UInt8], commandLine: String) { self.bytes = bytes; self.commandLine = commandLine }
}

/// Where the loader put things, for the CPU set-up and for tests.
public struct BootInfo: Equatable, Sendable {
    public var entry: UInt32
    public var infoAddress: UInt32
    public var kernelEnd: UInt64
    public var modules: [ClosedRange<UInt64>]
}

/// Loads a Multiboot v1 kernel into guest RAM, as QEMU's `-kernel` does:
/// ELF program headers by physical address (or the a.out-kludge addresses),
/// bss zeroed, then modules and the boot information after the kernel.
public enum MultibootLoader {
    /// `commandLine` is the full kernel command line ("name args").
    public static func load(image bytes: [UInt8], path: String, commandLine: String, modules: [BootModule],
                            into memory: GuestMemory) throws(MonitorError) -> BootInfo {
        func fail(_ reason: String) -> MonitorError { .badImage(path: path, reason: reason) }
        let ram = UInt64(memory.size)
        let header = try MultibootHeader.find(in: bytes, path: path)
        var entry: UInt64
        var end: UInt64 = 0

        if header.flags & MultibootHeader.hasAddresses != 0 {
            // Section 3.1.3: the file from header_addr - (load_addr) on is the image.
            let h = header
            guard h.headerAddress >= h.loadAddress, UInt64(h.headerAddress - h.loadAddress) <= UInt64(h.offset) else {
                throw fail("multiboot header_addr \(hex(h.headerAddress)) is below load_addr \(hex(h.loadAddress)) or past the header")
            }
            let fileStart = h.offset - Int(h.headerAddress - h.loadAddress)
            let loadEnd = h.loadEndAddress == 0 ? UInt64(h.loadAddress) + UInt64(bytes.count - fileStart) : UInt64(h.loadEndAddress)
            guard loadEnd >= UInt64(h.loadAddress), Int(loadEnd - UInt64(h.loadAddress)) <= bytes.count - fileStart else {
                throw fail("multiboot load_end_addr \(hex(loadEnd)) lies past the end of the file")
            }
            let bssEnd = max(loadEnd, UInt64(h.bssEndAddress))
            guard bssEnd <= ram else { throw fail("image ends at \(hex(bssEnd)), beyond the \(ram >> 20) MiB of RAM") }
            memory.write(bytes[fileStart..<(fileStart + Int(loadEnd - UInt64(h.loadAddress)))], at: UInt64(h.loadAddress))
            memory.zero(at: loadEnd, count: Int(bssEnd - loadEnd))
            entry = UInt64(h.entryAddress)
            end = bssEnd
        } else {
            guard ELFImage.isELF(bytes) else { throw fail("not an ELF file, and the multiboot header gives no load addresses") }
            let elf = try ELFImage.parse(bytes, path: path)
            for s in elf.segments {
                guard s.physicalAddress + s.memorySize <= ram else {
                    throw fail("segment at \(hex(s.physicalAddress)) (\(s.memorySize) bytes) lies outside the \(ram >> 20) MiB of RAM")
                }
                let start = Int(s.fileOffset)
                memory.write(bytes[start..<(start + Int(s.fileSize))], at: s.physicalAddress)
                memory.zero(at: s.physicalAddress + s.fileSize, count: Int(s.memorySize - s.fileSize))   // bss
                end = max(end, s.physicalAddress + s.memorySize)
            }
            guard let e = elf.physicalEntry else { throw fail("entry point \(hex(elf.entry)) is outside every loaded segment") }
            entry = e
        }
        guard entry < 1 << 32 else { throw fail("entry point \(hex(entry)) is not reachable from 32-bit protected mode") }

        // Modules and the boot information go after the kernel, page-aligned.
        var cursor = align(end)
        var placed: [ClosedRange<UInt64>] = []
        for m in modules {
            guard cursor + UInt64(m.bytes.count) <= ram else {
                throw fail("module \"\(m.commandLine)\" does not fit in \(ram >> 20) MiB of RAM after the kernel")
            }
            memory.write(m.bytes, at: cursor)
            placed.append(cursor...(cursor + UInt64(m.bytes.count)))
            cursor = align(cursor + UInt64(max(m.bytes.count, 1)))
        }
        try MultibootInfoBuilder(ramSize: ram, commandLine: commandLine,
                                            modules: zip(placed, modules).map { ($0, $1.commandLine) })
            .write(to: memory, at: cursor, path: path)
        return BootInfo(entry: UInt32(entry), infoAddress: UInt32(cursor), kernelEnd: end, modules: placed)
    }

    static func align(_ v: UInt64) -> UInt64 { (v + 0xfff) & ~0xfff }
}
