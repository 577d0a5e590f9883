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

    /// Creates or truncates `path`.
    public init(path: String) throws(TraceError) {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw .system(path, "cannot create", errno: errno) }
        owned = true
        buffer.reserveCapacity(1 << 16)
    }

    deinit { if owned && fd >= 0 { close(fd) } }

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

    /// Writes what is buffered and closes an owned file; throws the first error.
    public func finish() throws(TraceError) {
        flushBuffer()
        if owned && fd >= 0 {
            if close(fd) != 0 && error == nil { error = .system(path, "close failed", errno: errno) }
            fd = -1
        }
        if let error { throw error }
    }
}

private func rawWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
