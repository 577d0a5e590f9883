/// The bytes of one fuzz input, read front to back. Reading past the end
/// gives zeros, so every input, however short, is a complete case.
struct FuzzInput {
    let bytes: [UInt8]
    private(set) var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { position >= bytes.count }

    mutating func u8() -> UInt8 {
        defer { position += 1 }
        return position < bytes.count ? bytes[position] : 0
    }

    mutating func bool() -> Bool { u8() & 1 != 0 }

    mutating func integer<T: FixedWidthInteger & UnsignedInteger>(_: T.Type = T.self) -> T {
        (0..<MemoryLayout<T>.size).reduce(T(0)) { v, i in v | T(u8()) << (8 * i) }
    }

    /// The next `count` bytes, zero-padded.
    mutating func take(_ count: Int) -> [UInt8] { (0..<count).map { _ in u8() } }

    /// Everything not read yet.
    mutating func rest() -> [UInt8] {
        defer { position = max(position, bytes.count) }
        return position < bytes.count ? Array(bytes[position...]) : []
    }
}

/// Stops the process with `message` when a target's invariant is broken: a
/// trap that libFuzzer reports as a crash, in debug and release builds.
func invariant(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("invariant broken: \(message())", file: file, line: line) }
}
