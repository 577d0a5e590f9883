import Glibc
import NestedVMX

/// The code pages of the loaded images that hold sensitive instructions,
/// by physical page, as L0 patches them for L2 (docs/PATCHING.md). A page
/// in memory is one of them when its bytes equal the image's code bytes on
/// that page; its copy for L2 has INT3 (CC) at the first byte of each site.
/// Images may share addresses (two modules linked at 1 MiB): each keeps its
/// own entry, and the page's bytes pick one. A page that L1 has copied
/// elsewhere (by whole pages, as turtle loads its L2 at its own base without
/// EPT) is found by its content alone (`page(holding:)`).
public struct PatchTable: Sendable {
    public static let pageSize = 4096
    public static let trap: UInt8 = 0xcc

    public struct Page: Sendable {
        /// The image's code bytes on this page: offset in the page and bytes.
        public var expected: [(offset: Int, bytes: [UInt8])] = []
        /// The sites that start on this page.
        public var sites: [SensitiveSite] = []

        public init() {}

        /// A page with no sites whose every byte is compared: the page of
        /// L2's #UD handler under the handler trap (docs/PATCHING.md).
        public init(wholePage bytes: UnsafeRawBufferPointer) { expected = [(0, [UInt8](bytes))] }

        /// `page` (4 KiB) holds exactly the image's code here.
        public func matches(_ page: UnsafeRawBufferPointer) -> Bool {
            expected.allSatisfy { e in
                e.offset + e.bytes.count <= page.count
                    && e.bytes.withUnsafeBytes { memcmp($0.baseAddress!, page.baseAddress! + e.offset, e.bytes.count) == 0 }
            }
        }

        /// The site whose first byte is at `address`'s offset in its page,
        /// wherever the page is now.
        public func site(at address: UInt64) -> SensitiveSite? {
            sites.first { ($0.address ^ address) & UInt64(PatchTable.pageSize - 1) == 0 }
        }

        /// Where its content is fingerprinted: the start of its longest run
        /// of code bytes, if it has 16.
        var fingerprintOffset: Int? {
            expected.filter { $0.bytes.count >= 16 }.max { $0.bytes.count < $1.bytes.count }?.offset
        }

        /// Whether a site of one of `classes` starts on this page.
        public func traps(_ classes: TrapClasses) -> Bool { sites.contains { classes.contains($0.trapClass) } }

        /// The copy L2 runs: `page` with INT3 at each site of `classes`.
        public func patched(_ page: UnsafeRawBufferPointer, classes: TrapClasses) -> [UInt8] {
            var copy = [UInt8](page)
            for s in sites where classes.contains(s.trapClass) {
                copy[Int(s.address) & (PatchTable.pageSize - 1)] = PatchTable.trap
            }
            return copy
        }
    }

    public private(set) var pages: [UInt64: [Page]] = [:]
    /// The same pages by content: 16 code bytes at a fingerprint offset.
    private var byContent: [Fingerprint: [Page]] = [:]
    /// The fingerprint offsets in use, for `page(holding:)`.
    public private(set) var fingerprintOffsets: [Int] = []

    struct Fingerprint: Hashable {
        var offset: Int
        var low: UInt64, high: UInt64
        /// The 16 bytes of `bytes` at `at`, as found at page offset `offset`.
        init?(_ bytes: UnsafeRawBufferPointer, at: Int, offset: Int) {
            guard at >= 0, at + 16 <= bytes.count else { return nil }
            self.offset = offset
            low = bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)
            high = bytes.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)
        }
    }
    /// What the sweeps covered, for the README's figures.
    public private(set) var bytesSwept = 0

    public init() {}

    /// Sweeps each ELF file in `files`; anything else (a raw module, an
    /// image libelf refuses) has no sites.
    public init(sweeping files: [[UInt8]]) {
        for bytes in files where ELFImage.isELF(bytes) {
            guard let image = try? ELFImage.parse(bytes, path: "module") else { continue }
            add(CodeSweep(image: image, bytes: bytes), image: image, bytes: bytes)
        }
    }

    /// Adds the sites of one image, swept already, with its code bytes.
    public mutating func add(_ sweep: CodeSweep, image: ELFImage, bytes: [UInt8]) {
        bytesSwept += sweep.bytesSwept
        var mine: [UInt64: Page] = [:]
        for site in sweep.sites {
            mine[site.address & ~UInt64(Self.pageSize - 1), default: Page()].sites.append(site)
        }
        for s in image.segments where s.executable && s.fileSize > 0 {
            var at = s.physicalAddress
            let end = s.physicalAddress + s.fileSize
            while at < end {
                let page = at & ~UInt64(Self.pageSize - 1)
                let upTo = min(end, page + UInt64(Self.pageSize))
                if mine[page] != nil {
                    let file = Int(s.fileOffset + (at - s.physicalAddress))
                    mine[page]?.expected.append((Int(at - page), Array(bytes[file..<file + Int(upTo - at)])))
                }
                at = upTo
            }
        }
        for (page, entry) in mine {
            pages[page, default: []].append(entry)
            guard let offset = entry.fingerprintOffset,
                  let run = entry.expected.first(where: { $0.offset == offset }),
                  let key = run.bytes.withUnsafeBytes({ Fingerprint($0, at: 0, offset: offset) })
            else { continue }
            byContent[key, default: []].append(entry)
            if !fingerprintOffsets.contains(offset) { fingerprintOffsets.append(offset) }
        }
    }

    /// The entry for the page at physical `page` whose code bytes `bytes`
    /// (that page's 4 KiB) hold, if any.
    public func page(at page: UInt64, holding bytes: UnsafeRawBufferPointer) -> Page? {
        pages[page]?.first { $0.matches(bytes) }
    }

    /// The entry whose code bytes `bytes` (a page's 4 KiB) hold, wherever
    /// that page is: a lookup by fingerprint at each offset in use.
    public func page(holding bytes: UnsafeRawBufferPointer) -> Page? {
        for offset in fingerprintOffsets {
            guard let key = Fingerprint(bytes, at: offset, offset: offset), let candidates = byContent[key] else { continue }
            if let entry = candidates.first(where: { $0.matches(bytes) }) { return entry }
        }
        return nil
    }
}
