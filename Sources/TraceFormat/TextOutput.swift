#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Buffered text output to a file descriptor, for exporters that stream
/// millions of lines: a 1 MiB buffer flushed with write(2). Exporters in
/// this module format straight into the buffer (`reserve`/`commit`).
/// Errors name `path`.
public final class TextOutput {
    public let path: String
    private var fd: Int32
    private let owned: Bool
    static let capacity = 1 << 20
    /// The buffer and how much of it holds output not yet written.
    private(set) var buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: TextOutput.capacity)
    var count = 0
    /// Set by `compressPackets`: each full buffer goes to it instead of to the file.
    private var compressor: PacketCompressor?
    public private(set) var error: TraceError?

    /// Writes to standard output.
    public init() {
        path = "<stdout>"
        fd = 1
        owned = false
    }

    /// A regular file (or none yet) is written under a temporary name in
    /// the same directory and renamed over `path` by `finish`, so a failed
    /// or interrupted export never leaves `path` half written.
    private var temporaryPath: String?

    /// Creates `path`, or replaces it at `finish`. Refuses a `path` that is
    /// one of `inputs` (by device and inode): it would destroy the input.
    public init(path: String, inputs: [String] = []) throws(TraceError) {
        self.path = path
        if let input = FileIdentity.clash(output: path, inputs: inputs) {
            throw TraceError(path: path, message: "is the input \(input); refusing to overwrite it")
        }
        let existing = FileIdentity(path: path)
        let replaceable = existing?.isRegular ?? true
        let target = replaceable ? "\(path).tmp-\(getpid())" : path
        fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw .system(path, "cannot create", errno: errno) }
        temporaryPath = target == path ? nil : target
        owned = true
    }

    deinit {
        if owned && fd >= 0 { close(fd) }
        if let temporaryPath { unlink(temporaryPath) }
        buffer.deallocate()
    }

    public func write(_ s: String) {
        var s = s
        s.withUTF8 { write(bytes: UnsafeRawBufferPointer($0)) }
    }

    public func write(bytes: UnsafeRawBufferPointer) {
        var rest = bytes
        while !rest.isEmpty {
            if count == TextOutput.capacity { flushBuffer() }
            let n = min(rest.count, TextOutput.capacity - count)
            (buffer + count).update(from: rest.baseAddress!.assumingMemoryBound(to: UInt8.self), count: n)
            count += n
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
        }
    }

    /// Room for at least `n` (≤ 64 KiB) more bytes at the returned pointer,
    /// flushing first if needed; `commit` then says how many were written.
    @inline(__always)
    func reserve(_ n: Int) -> UnsafeMutablePointer<UInt8> {
        if TextOutput.capacity - count < n { flushBuffer() }
        return buffer + count
    }

    @inline(__always)
    func commit(_ n: Int) { count += n }

    /// From now on, each buffer of output is written as one Perfetto
    /// compressed packet (`PacketCompressor`), deflated on another thread.
    /// A buffer is flushed only by `reserve` (or `finish`), so when every
    /// packet is written with one `reserve`/`commit`, as the Perfetto export
    /// does, each buffer holds whole packets. Not for `write`, which splits.
    func compressPackets() {
        flushBuffer()
        compressor = PacketCompressor(capacity: TextOutput.capacity)
    }

    /// Ends `compressPackets`: what is buffered goes out in a last
    /// compressed packet, every compressed packet is written, and later
    /// output is written as it is.
    func endCompressedPackets() {
        guard let compressor else { return }
        flushBuffer()
        compressor.drain(write: writeOut)
        self.compressor = nil
    }

    private func flushBuffer() {
        if let compressor {
            if count > 0 { buffer = compressor.submit(buffer, count: count, write: writeOut) }
            count = 0
            return
        }
        writeOut(buffer, count)
        count = 0
    }

    /// Writes `count` bytes at `p` to the file; records the first error and then writes nothing more.
    private func writeOut(_ p: UnsafeRawPointer, _ count: Int) {
        guard error == nil else { return }
        var done = 0
        while done < count {
            let n = rawWrite(fd, p + done, count - done)
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            error = .system(path, "write failed", errno: n < 0 ? errno : EIO)
            return
        }
    }

    /// Writes what is buffered, closes an owned file and puts it in place;
    /// throws the first error (and then leaves `path` as it was).
    public func finish() throws(TraceError) {
        flushBuffer()
        compressor?.drain(write: writeOut)
        if owned && fd >= 0 {
            if close(fd) != 0 && error == nil { error = .system(path, "close failed", errno: errno) }
            fd = -1
        }
        if let temporaryPath {
            if error == nil, rename(temporaryPath, path) != 0 { error = .system(path, "cannot replace", errno: errno) }
            if error != nil { unlink(temporaryPath) }
            self.temporaryPath = nil
        }
        if let error { throw error }
    }
}

private func rawWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
