#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which file a path names: its device and inode, so that two names of one
/// file (a link, `./x` and `x`) compare equal. Used to refuse an output
/// that is an input of the same run, which would destroy it.
public struct FileIdentity: Equatable, Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64
    /// A regular file, the only kind an output can clobber.
    public let isRegular: Bool

    /// The file at `path`, following links; nil when nothing is there.
    public init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        isRegular = st.st_mode & S_IFMT == S_IFREG
    }

    /// The first of `inputs` that `output` would overwrite, by identity, or
    /// by name when `output` does not exist yet.
    public static func clash(output: String, inputs: [String]) -> String? {
        guard let out = FileIdentity(path: output) else { return inputs.first { $0 == output } }
        return inputs.first { FileIdentity(path: $0) == out && out.isRegular }
    }
}
