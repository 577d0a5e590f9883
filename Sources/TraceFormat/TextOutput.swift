#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Buffered text output to a file descriptor (64 KiB write(2)s), for
/// exporters that stream millions of lines. Errors name `path`.
public final class TextOutput {
    public let path: String
    private var fd: Int32
    private let owned: Bool
    private var buffer: [UInt8] = []
    public private(set) var error: TraceError?

    /// Writes to standard output.
    public init() {
        path = "<stdout>"
        fd = 1
        owned = false
        buffer.reserveCapacity(1 << 16)
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
        buffer.reserveCapacity(1 << 16)
    }

    deinit {
        if owned && fd >= 0 { close(fd) }
        if let temporaryPath { unlink(temporaryPath) }
    }

    public func write(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        if buffer.count >= 1 << 16 { flushBuffer() }
    }

    private func flushBuffer() {
        defer { buffer.removeAll(keepingCapacity: true) }
        guard error == nil else { return }
        buffer.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = rawWrite(fd, b.baseAddress! + done, b.count - done)
                if n > 0 { done += n; continue }
                if n < 0 && errno == EINTR { continue }
                error = .system(path, "write failed", errno: n < 0 ? errno : EIO)
                return
            }
        }
    }

    /// Writes what is buffered, closes an owned file and puts it in place;
    /// throws the first error (and then leaves `path` as it was).
    public func finish() throws(TraceError) {
        flushBuffer()
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
