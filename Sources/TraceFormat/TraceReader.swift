#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A validated, memory-mapped trace file. Records decode in place from the
/// read-only mapping; indexing allocates nothing.
///
/// Immutable after init, hence `@unchecked Sendable`. As with any mmap, a
/// file truncated by another process while mapped can raise SIGBUS.
public final class TraceReader: @unchecked Sendable {
    public let path: String
    public let version: UInt16
    public let metadata: TraceMetadata
    /// Size of the header; records start here.
    public let headerSize: Int
    public let fileSize: Int
    /// Complete records in the file (derived from the size for killed runs).
    public let recordCount: Int
    /// False if the writer never patched the count (a killed run).
    public let finished: Bool
    /// Bytes of a trailing partial record that were ignored (killed runs only).
    public let trailingBytes: Int
    /// For a selection (`init(filtering:by:description:)`): what was
    /// selected, and the record count of the whole file.
    public private(set) var selection: String?
    public private(set) var unfilteredRecordCount: Int

    let mapping: UnsafeMutableRawPointer
    @usableFromInline let records: UnsafeRawPointer
    /// True when `mapping` maps the file (not a copy in anonymous memory),
    /// so its pages can be dropped and read again (`scanReleasingPages`).
    private var fileBacked = false

    public convenience init(path: String) throws(TraceError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .system(path, "cannot open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw .system(path, "cannot stat", errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw TraceError(path: path, message: "not a regular file")
        }
        let size = Int(st.st_size)
        guard size > 0 else {
            throw TraceError(path: path, offset: 0, message: "empty file (no trace header)")
        }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw .system(path, "cannot map the file", errno: errno)
        }
        try self.init(path: path, mapping: m, size: size)
        fileBacked = true
    }

    /// A trace held in memory (a copy of `bytes`), validated as a file
    /// would be; errors name `name`. For fuzzing and tools that already
    /// hold the bytes.
    public convenience init(bytes: [UInt8], name: String = "<memory>") throws(TraceError) {
        guard !bytes.isEmpty else { throw TraceError(path: name, offset: 0, message: "empty file (no trace header)") }
        guard let m = mmap(nil, bytes.count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), m != MAP_FAILED else {
            throw .system(name, "cannot map memory", errno: errno)
        }
        bytes.withUnsafeBytes { m.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        try self.init(path: name, mapping: m, size: bytes.count)
    }

    /// Takes ownership of the mapping `m` of `size` bytes (unmapped here if
    /// the header is invalid, else by deinit).
    private init(path: String, mapping m: UnsafeMutableRawPointer, size: Int) throws(TraceError) {
        self.path = path
        let h = UnsafeRawBufferPointer(start: m, count: size)
        let header: Header
        do {
            header = try Header.validate(h, path: path)
        } catch {
            munmap(m, size)
            throw error
        }
        mapping = m
        fileSize = size
        version = header.version
        headerSize = header.headerSize
        metadata = header.metadata
        recordCount = header.recordCount
        finished = header.finished
        trailingBytes = (size - header.headerSize) % TraceLayout.recordSize
        records = UnsafeRawPointer(m + header.headerSize)
        unfilteredRecordCount = header.recordCount
    }

    deinit { munmap(mapping, fileSize) }

    /// The records of `source` that `filter` keeps, in file order, as a trace
    /// in anonymous memory with `source`'s header, path and metadata (the
    /// record count set to those kept). Record indices are positions in the
    /// selection.
    public convenience init(filtering source: TraceReader, by filter: RecordFilter, description: String = "")
        throws(TraceError) {
        let episodes = filter.episodeRoots.isEmpty ? nil : filter.episodes(in: source)
        func keep(_ r: TraceRecord) -> Bool { filter.matches(r) && (episodes?.contains(r.episode) ?? true) }
        var kept = 0
        source.forEach { if keep($0) { kept += 1 } }
        let size = source.headerSize + kept * TraceLayout.recordSize
        guard let m = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), m != MAP_FAILED else {
            throw .system(source.path, "cannot map memory for the selected records", errno: errno)
        }
        m.copyMemory(from: source.mapping, byteCount: source.headerSize)
        // An unfinished source stays unfinished (its count derives from the size).
        if source.finished { m.storeBytes(of: UInt64(kept).littleEndian, toByteOffset: 16, as: UInt64.self) }
        var out = m + source.headerSize
        var p = source.records
        for _ in 0..<source.recordCount {
            if keep(TraceRecord(decoding: p)) {
                out.copyMemory(from: p, byteCount: TraceLayout.recordSize)
                out += TraceLayout.recordSize
            }
            p += TraceLayout.recordSize
        }
        try self.init(path: source.path, mapping: m, size: size)
        selection = description
        unfilteredRecordCount = source.recordCount
    }

    /// Record `i` (0 ..< recordCount), decoded from the mapping.
    @inlinable
    public subscript(i: Int) -> TraceRecord {
        precondition(i >= 0 && i < recordCount, "trace record index out of range")
        return TraceRecord(decoding: records + i &* 64)
    }

    /// Calls `body` for every record in file order; the fast path for whole-file scans.
    @inlinable
    public func forEach(_ body: (TraceRecord) throws -> Void) rethrows {
        var p = records
        for _ in 0..<recordCount {
            try body(TraceRecord(decoding: p))
            p += 64
        }
    }

    /// Calls `body` for every record in file order, as `forEach`, and drops
    /// the mapped pages of each 16 MiB scanned from this process (a file
    /// mapping only; they are read back from the page cache if touched
    /// again), so that a one-pass analysis of a large trace keeps its
    /// resident memory bounded (`storms`, Traces/README.md).
    @inlinable
    public func scanReleasingPages(_ body: (TraceRecord) throws -> Void) rethrows {
        let chunk = 1 << 18   // records: 16 MiB
        var p = records
        var done = 0
        while done < recordCount {
            let n = Swift.min(chunk, recordCount - done)
            let start = p
            for _ in 0..<n {
                try body(TraceRecord(decoding: p))
                p += 64
            }
            done += n
            release(start, p)
        }
    }

    /// Drops the whole pages of the mapping in [from, to).
    @usableFromInline
    func release(_ from: UnsafeRawPointer, _ to: UnsafeRawPointer) {
        guard fileBacked else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let base = UnsafeRawPointer(mapping)
        let lo = (from - base + page - 1) / page * page, hi = (to - base) / page * page
        if hi > lo { _ = madvise(mapping + lo, hi - lo, MADV_DONTNEED) }
    }

    /// Raw bytes of all complete records, for callers that decode selectively.
    public var recordBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: records, count: recordCount * TraceLayout.recordSize)
    }
}

extension TraceReader: RandomAccessCollection {
    public var startIndex: Int { 0 }
    public var endIndex: Int { recordCount }
}

/// Header validation, kept apart from the mapping bookkeeping.
private struct Header {
    var version: UInt16
    var headerSize: Int
    var metadata: TraceMetadata
    var recordCount: Int
    var finished: Bool

    static func validate(_ h: UnsafeRawBufferPointer, path: String) throws(TraceError) -> Header {
        func fail(_ offset: Int, _ message: String) -> TraceError {
            TraceError(path: path, offset: UInt64(offset), message: message)
        }
        let size = h.count
        // Magic first, so a short non-trace file says "bad magic", not "truncated".
        let magic = TraceLayout.magic
        for i in 0..<min(size, magic.count) where h[i] != magic[i] {
            throw fail(i, "not a Terrapin trace (bad magic)")
        }
        guard size >= TraceLayout.fixedHeaderSize else {
            throw fail(size, "truncated header (file is \(size) bytes, the header needs at least \(TraceLayout.fixedHeaderSize))")
        }
        func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: h.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: h.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: h.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }

        let version = u16(8)
        guard version == TraceLayout.version else {
            throw fail(8, "unknown version \(version) (this reader knows version \(TraceLayout.version))")
        }
        let recordSize = Int(u16(10))
        guard recordSize == TraceLayout.recordSize else {
            throw fail(10, "record size \(recordSize), expected \(TraceLayout.recordSize)")
        }
        let headerSize = Int(u32(12))
        guard headerSize > 0, headerSize % 64 == 0 else {
            throw fail(12, "header size \(headerSize) is not a positive multiple of 64")
        }
        guard headerSize <= size else {
            throw fail(12, "header size \(headerSize) is beyond the end of the \(size)-byte file")
        }
        let metadataLength = Int(u32(32))
        guard metadataLength <= headerSize - TraceLayout.fixedHeaderSize else {
            throw fail(32, "metadata length \(metadataLength) does not fit in the \(headerSize)-byte header")
        }
        let text = UnsafeRawBufferPointer(rebasing: h[TraceLayout.fixedHeaderSize..<(TraceLayout.fixedHeaderSize + metadataLength)])
        let entries = try TraceMetadata.parse(text, base: UInt64(TraceLayout.fixedHeaderSize), path: path)

        let body = size - headerSize
        let complete = body / TraceLayout.recordSize
        let stray = body % TraceLayout.recordSize
        let count = u64(16)
        let finished = count != TraceLayout.unfinishedCount
        if finished && (count != UInt64(complete) || stray != 0) {
            let extra = stray == 0 ? "" : " and \(stray) stray bytes"
            throw fail(16, "header says \(count) records but the file holds \(complete)\(extra)")
        }
        return Header(version: version, headerSize: headerSize,
                      metadata: TraceMetadata(entries, startTimeNanos: u64(24)),
                      recordCount: complete, finished: finished)
    }
}
