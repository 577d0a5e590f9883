#if canImport(Glibc)
import Glibc
#endif
import KVM

/// Errors from setting up or running a machine, each with a clear message.
public enum MonitorError: Error, CustomStringConvertible, Equatable {
    /// The image or a module cannot be loaded.
    case badImage(path: String, reason: String)
    /// A configuration value is out of range.
    case badConfig(String)
    /// A host operation (file, KVM) failed, with its errno (0: the message
    /// already says why, as a trace error does).
    case io(String, errno: Int32)
    case kvm(String)

    public var description: String {
        switch self {
        case let .badImage(path, reason): return "\(path): \(reason)"
        case let .badConfig(message): return message
        case let .io(what, errno): return errno == 0 ? what : "\(what): \(String(cString: strerror(errno)))"
        case let .kvm(message): return message
        }
    }

    init(_ error: KVMError) { self = .kvm(error.description) }
}

/// Writes one line to standard error.
public func printError(_ text: String) {
    var line = text
    line.append("\n")
    line.withUTF8 { buf in _ = write(2, buf.baseAddress, buf.count) }
}
