import KVM

/// Builds the Multiboot v1 information structure (specification section 3.3)
/// with memory sizes, command line, modules, memory map and loader name.
struct MultibootInfoBuilder {
    var ramSize: UInt64
    var commandLine: String
    var modules: [(range: ClosedRange<UInt64>, commandLine: String)]

    /// The guest-physical RAM layout the memory map reports: conventional
    /// memory below the EBDA, the BIOS area reserved, the rest available.
    static func memoryMap(ramSize: UInt64) -> [(base: UInt64, length: UInt64, type: UInt32)] {
        [(0, 0x9_fc00, 1), (0x9_fc00, 0x400, 2), (0xf_0000, 0x1_0000, 2), (0x10_0000, ramSize - 0x10_0000, 1)]
    }

    static let flagMemory: UInt32 = 1 << 0, flagCommandLine: UInt32 = 1 << 2, flagModules: UInt32 = 1 << 3
    static let flagMemoryMap: UInt32 = 1 << 6, flagLoaderName: UInt32 = 1 << 9
    static let infoSize: UInt64 = 88
    static let loaderName = "terrapin"

    /// Writes everything in one block at `base`; returns nothing, throws if it does not fit.
    func write(to memory: GuestMemory, at base: UInt64, path: String) throws(MonitorError) {
        guard ramSize >= 0x10_0000 else {   // the memory map and mem_upper assume RAM above 1 MiB
            throw .badImage(path: path, reason: "guest RAM of \(ramSize) bytes is below 1 MiB")
        }
        var blob = [UInt8](repeating: 0, count: Int(Self.infoSize))
        func put32(_ v: UInt32, _ at: Int) { for i in 0..<4 { blob[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
        func append32(_ v: UInt32) { for i in 0..<4 { blob.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
        func append64(_ v: UInt64) { append32(UInt32(truncatingIfNeeded: v)); append32(UInt32(truncatingIfNeeded: v >> 32)) }
        func appendString(_ s: String) -> UInt32 {
            let at = UInt32(truncatingIfNeeded: base) + UInt32(blob.count)
            blob.append(contentsOf: Array(s.utf8)); blob.append(0)
            return at
        }
        func here() -> UInt32 { UInt32(truncatingIfNeeded: base) + UInt32(blob.count) }

        put32(Self.flagMemory | Self.flagCommandLine | Self.flagModules | Self.flagMemoryMap | Self.flagLoaderName, 0)
        put32(639, 4)                                                   // mem_lower, KiB below 640 KiB
        put32(UInt32(clamping: (ramSize - 0x10_0000) / 1024), 8)        // mem_upper, KiB above 1 MiB
        put32(appendString(commandLine), 16)
        put32(appendString(Self.loaderName), 64)

        let mmap = Self.memoryMap(ramSize: ramSize)
        put32(here(), 48)
        for e in mmap { append32(20); append64(e.base); append64(e.length); append32(e.type) }
        put32(UInt32(mmap.count * 24), 44)

        let strings = modules.map { appendString($0.commandLine) }
        while blob.count % 16 != 0 { blob.append(0) }
        put32(UInt32(modules.count), 20)
        put32(here(), 24)
        for (m, string) in zip(modules, strings) {
            append32(UInt32(m.range.lowerBound)); append32(UInt32(m.range.upperBound)); append32(string); append32(0)
        }
        guard base + UInt64(blob.count) <= UInt64(memory.size), base + UInt64(blob.count) <= 1 << 32 else {
            throw .badImage(path: path, reason: "no room for the multiboot information after the kernel and modules")
        }
        memory.write(blob, at: base)
    }
}
