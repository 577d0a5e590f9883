#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a trace file. `append` sits on the hypervisor's per-exit path: it
/// encodes into a preallocated batch buffer and issues one write(2) per full
/// batch; it never allocates.
///
/// Until `finish()` the header's record count is all ones, so a killed run
/// (or a writer dropped without `finish()`) still reads back up to its last
/// complete record. Not thread-safe: use one writer per thread or a lock.
public final class TraceWriter {
    public let path: String
    public let batchRecords: Int

    // Hot state is exempt from dynamic exclusivity checks: the class is
    // single-threaded by contract and none of these are accessed re-entrantly.
    @usableFromInline let buffer: UnsafeMutableRawPointer
    @usableFromInline @exclusivity(unchecked) var pending: Int = 0
    @usableFromInline @exclusivity(unchecked) var appended: UInt64 = 0
    @usableFromInline @exclusivity(unchecked) var failed = false
    var fd: Int32
    var error: TraceError?
    /// Bytes of the file written so far (header + flushed records); error offsets.
    var fileOffset: UInt64 = 0
    /// File offset and byte length of each metadata value (its first entry), for `patchMetadata`.
    private var valueSpans: [String: (offset: Int, length: Int)] = [:]

    /// Records accepted by `append` (buffered or on disk). Stops growing after
    /// a write error, since later records are dropped.
    public var recordsWritten: UInt64 { appended }

    /// Creates or truncates `path` and writes the header (count = unfinished).
    public init(path: String, metadata: TraceMetadata, batchRecords: Int = 4096) throws(TraceError) {
        self.path = path
        self.batchRecords = max(1, batchRecords)
        let text = metadata.encodedText()
        // The encoded text holds one "key=value\n" per entry: find where each value lies.
        var at = TraceLayout.fixedHeaderSize
        for (key, value) in metadata.entries {
            let keyLength = key.utf8.count, valueLength = value.utf8.count
            if valueSpans[key] == nil { valueSpans[key] = (at + keyLength + 1, valueLength) }
            at += keyLength + 1 + valueLength + 1
        }
        guard text.count <= Int(UInt32.max) - TraceLayout.fixedHeaderSize - 63 else {
            throw TraceError(path: path, message: "metadata too large (\(text.count) bytes)")
        }
        let headerSize = (TraceLayout.fixedHeaderSize + text.count + 63) / 64 * 64
        var header = [UInt8](repeating: 0, count: headerSize)
        header.withUnsafeMutableBytes { h in
            h.storeBytes(of: TraceLayout.magicValue.littleEndian, toByteOffset: 0, as: UInt64.self)
            h.storeBytes(of: TraceLayout.version.littleEndian, toByteOffset: 8, as: UInt16.self)
            h.storeBytes(of: UInt16(TraceLayout.recordSize).littleEndian, toByteOffset: 10, as: UInt16.self)
            h.storeBytes(of: UInt32(headerSize).littleEndian, toByteOffset: 12, as: UInt32.self)
            h.storeBytes(of: TraceLayout.unfinishedCount.littleEndian, toByteOffset: 16, as: UInt64.self)
            h.storeBytes(of: metadata.startTimeNanos.littleEndian, toByteOffset: 24, as: UInt64.self)
            h.storeBytes(of: UInt32(text.count).littleEndian, toByteOffset: 32, as: UInt32.self)
            for (i, b) in text.enumerated() { h[TraceLayout.fixedHeaderSize + i] = b }
        }
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw .system(path, "cannot create", errno: errno) }
        buffer = .allocate(byteCount: self.batchRecords * TraceLayout.recordSize, alignment: 64)
        let ok = header.withUnsafeBytes { writeAll($0.baseAddress!, $0.count) }
        if !ok {
            // Fully initialised, so deinit still runs and frees the buffer.
            close(fd)
            fd = -1
            throw error!
        }
    }

    deinit {
        // No count patch: an abandoned writer leaves a file that reads as a killed run.
        if fd >= 0 {
            flushBatch()
            close(fd)
        }
        buffer.deallocate()
    }

    /// Queues one record; writes the batch when it is full. Errors are
    /// remembered and reported by `finish()`.
    @inlinable @inline(__always)
    public func append(_ r: TraceRecord) {
        if failed { return }
        r.encode(to: buffer + pending &* 64)
        pending &+= 1
        appended &+= 1
        if pending == batchRecords { flushBatch() }
    }

    /// Writes the buffered records (if any) in one write(2) loop.
    @usableFromInline
    func flushBatch() {
        defer { pending = 0 }
        guard pending > 0, !failed, fd >= 0 else { return }
        _ = writeAll(buffer, pending * TraceLayout.recordSize)
    }

    /// Overwrites the value of metadata `key` in the header with `value` of
    /// the same UTF-8 length (no newline), as the count is patched: for
    /// values known only once the run starts, written first as placeholders
    /// (Traces/README.md, "Lining up with host traces").
    public func patchMetadata(_ key: String, _ value: String) throws(TraceError) {
        guard let span = valueSpans[key] else {
            throw TraceError(path: path, message: "no metadata key '\(key)' to patch")
        }
        let bytes = Array(value.utf8)
        guard bytes.count == span.length, !bytes.contains(0x0A) else {
            throw TraceError(path: path, message: "metadata '\(key)': \(bytes.count) bytes for a \(span.length)-byte value")
        }
        guard fd >= 0 else { throw TraceError(path: path, message: "metadata '\(key)': the writer is finished") }
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, off_t(span.offset)) }
        if n != bytes.count {
            throw .system(path, "cannot write metadata '\(key)'", errno: n < 0 ? errno : EIO, offset: UInt64(span.offset))
        }
    }

    /// Writes the buffered records, then the final record count, and closes
    /// the file. Throws the first write error seen (the count is then left
    /// unfinished, so the file reads as a killed run). Calling it again does nothing.
    public func finish() throws(TraceError) {
        guard fd >= 0 else {
            if let error { throw error }
            return
        }
        flushBatch()
        if failed {
            close(fd)
            fd = -1
            throw error!
        }
        var count = appended.littleEndian
        let n = withUnsafeBytes(of: &count) { pwrite(fd, $0.baseAddress!, 8, 16) }
        if n != 8 {
            let e = n < 0 ? errno : EIO
            close(fd)
            fd = -1
            error = .system(path, "cannot write the record count", errno: e, offset: 16)
            throw error!
        }
        let rc = close(fd)
        fd = -1
        if rc != 0 {
            error = .system(path, "close failed", errno: errno)
            throw error!
        }
    }

    /// write(2) until done, retrying EINTR and short writes. On failure marks
    /// the writer failed and records the error.
    private func writeAll(_ p: UnsafeRawPointer, _ count: Int) -> Bool {
        var done = 0
        while done < count {
            let n = write(fd, p + done, count - done)
            if n > 0 {
                done += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            let e = n < 0 ? errno : EIO
            fileOffset += UInt64(done)
            failed = true
            error = .system(path, "write failed", errno: e, offset: fileOffset)
            return false
        }
        fileOffset += UInt64(count)
        return true
    }
}
