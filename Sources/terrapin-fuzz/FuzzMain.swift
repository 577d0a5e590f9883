import FuzzTargets
#if canImport(Glibc)
import Glibc
#endif

#if FUZZING
// libFuzzer's entry point (scripts/fuzz builds this with -sanitize=fuzzer,
// which brings libFuzzer's main). The target is named by TERRAPIN_FUZZ_TARGET.
nonisolated(unsafe) private var target: FuzzTarget?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    if target == nil {
        guard let name = getenv("TERRAPIN_FUZZ_TARGET").map({ String(cString: $0) }), let t = FuzzTarget(rawValue: name) else {
            fatalError("TERRAPIN_FUZZ_TARGET must name a target: \(FuzzTarget.allCases.map(\.rawValue))")
        }
        target = t
    }
    target!.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
/// Without libFuzzer: replays inputs through a target, to reproduce a crash
/// in an ordinary build (`terrapin-fuzz TARGET FILE...`).
@main
struct Replay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let name = args.first, let target = FuzzTarget(rawValue: name), args.count > 1 else {
            let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
            writeError("usage: terrapin-fuzz \(names) FILE...\n")
            exit(64)
        }
        for path in args.dropFirst() {
            guard let bytes = readFile(path) else { writeError("terrapin-fuzz: cannot read \(path)\n"); exit(66) }
            target.run(bytes)
            print("\(path): ok")
        }
    }
}

private func writeError(_ s: String) { _ = s.withCString { write(2, $0, strlen($0)) } }

private func readFile(_ path: String) -> [UInt8]? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        bytes.append(contentsOf: chunk[0..<n])
        if n < chunk.count { return ferror(f) == 0 ? bytes : nil }
    }
}
#endif
