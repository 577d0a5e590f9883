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

    /// KVM_RUN of a VM with no memory slot at all (ENOSPC).
    public var noMemorySlot: Bool { errno == ENOSPC }
    /// KVM refused the vCPU state it was asked to run (EINVAL).
    public var invalidState: Bool { errno == EINVAL }

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
