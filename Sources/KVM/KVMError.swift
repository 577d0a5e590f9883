#if canImport(Glibc)
import Glibc
#endif

/// A failed KVM or host operation: what was attempted and the errno it gave.
public struct KVMError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// Captures the calling thread's current errno.
    static func last(_ operation: String) -> KVMError {
        KVMError(operation, errno: Glibc.errno)
    }

    public var description: String {
        if errno == 0 { return "\(operation) failed" }
        return "\(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// An owned file descriptor, closed when the owner goes away.
struct OwnedFD: ~Copyable {
    let raw: Int32
    init(_ raw: Int32) { self.raw = raw }
    deinit { close(raw) }
}
