#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A problem reading or writing a trace file. Always names the file and,
/// when the problem is in the file's contents, the byte offset.
public struct TraceError: Error, CustomStringConvertible, Equatable, Sendable {
    public var path: String
    /// Byte offset in the file the problem concerns, if any.
    public var offset: UInt64?
    public var message: String
    /// errno of the failing system call, if any (already described in `message`).
    public var errno: Int32?

    public init(path: String, offset: UInt64? = nil, message: String, errno: Int32? = nil) {
        self.path = path
        self.offset = offset
        self.message = message
        self.errno = errno
    }

    /// e.g. "trace.trc: byte 8: unknown version 7 (this reader knows version 1)"
    public var description: String {
        if let offset { return "\(path): byte \(offset): \(message)" }
        return "\(path): \(message)"
    }

    /// An error for a failed system call; `what` is e.g. "cannot open".
    static func system(_ path: String, _ what: String, errno code: Int32, offset: UInt64? = nil) -> TraceError {
        TraceError(path: path, offset: offset, message: "\(what): \(String(cString: strerror(code)))", errno: code)
    }
}
