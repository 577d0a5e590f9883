// swift-tools-version:6.0
import PackageDescription

/// Release builds of the monitor's modules skip the runtime exclusivity
/// checks: the class properties on L0's exit path paid one check per access
/// (swift_beginAccess, its access set and a thread-local look-up), a tenth
/// of L0's instructions per nested exit (docs/PERFORMANCE.md). Debug
/// builds, which the tests run, keep them.
let releaseSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
/// ... and the modules the monitor calls into are compiled for
/// cross-module optimization, so that the monitor specializes their
/// generic code (the page walker, the VMCS and eVMCS transfers over its
/// memory types) instead of calling it through witness tables.
let calleeSettings: [SwiftSetting] = releaseSettings
    + [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]

let package = Package(
    name: "Terrapin",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "terrapin", targets: ["terrapin"]),
        .executable(name: "terrapin-trace", targets: ["terrapin-trace"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C shim over linux/kvm.h: request numbers and ioctl wrappers.
        .target(name: "CKVM"),
        // libelf, through pkg-config (Debian: libelf-dev).
        .systemLibrary(name: "CLibElf", pkgConfig: "libelf", providers: [.apt(["libelf-dev"])]),
        // Zydis, the x86 decoder that sweeps guest code for sensitive instructions (Debian: libzydis-dev).
        .systemLibrary(name: "CZydis", providers: [.apt(["libzydis-dev"])]),
        .target(name: "KVM", dependencies: ["CKVM"], swiftSettings: calleeSettings),
        .target(name: "VMXArch", swiftSettings: calleeSettings),
        // The core: VMX semantics in pure Swift, over value-type CPU state and a memory protocol.
        .target(name: "NestedVMX", dependencies: ["VMXArch"], swiftSettings: calleeSettings),
        // One-shot zlib-format deflate with Intel ISA-L's igzip (Debian: libisal-dev), for
        // the Perfetto export's compressed packets; C so that igzip's large stream struct stays in C.
        .target(name: "CDeflate", linkerSettings: [.linkedLibrary("isal")]),
        // zlib (Debian: zlib1g-dev): the tests inflate the compressed Perfetto export with it.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "TraceFormat", dependencies: ["VMXArch", "CDeflate"]),
        .target(name: "Monitor", dependencies: ["KVM", "VMXArch", "NestedVMX", "TraceFormat", "CLibElf", "CZydis"],
                swiftSettings: releaseSettings),
        .executableTarget(name: "terrapin", dependencies: [
            "Monitor", "TraceFormat", "TraceReports",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // What terrapin-trace prints: the summary, storms and compare reports and the SVG plot.
        .target(name: "TraceReports", dependencies: ["TraceFormat"]),
        .executableTarget(name: "terrapin-trace", dependencies: [
            "TraceFormat", "TraceReports",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // libFuzzer targets over every parser and rule set that takes guest or
        // file input (docs/FUZZING.md); scripts/fuzz builds terrapin-fuzz with
        // -sanitize=fuzzer, an ordinary build replays inputs.
        .target(name: "FuzzTargets", dependencies: ["NestedVMX", "VMXArch", "TraceFormat", "TraceReports", "Monitor", "KVM"]),
        .executableTarget(name: "terrapin-fuzz", dependencies: ["FuzzTargets"]),
        .testTarget(name: "KVMTests", dependencies: ["KVM"]),
        .testTarget(name: "MonitorTests", dependencies: ["Monitor", "KVM", "TraceFormat"]),
        .testTarget(name: "NestedVMXTests", dependencies: ["NestedVMX", "VMXArch"]),
        .testTarget(name: "TraceFormatTests", dependencies: ["TraceFormat", "VMXArch", "CZlib"]),
        .testTarget(name: "TerrapinTraceTests", dependencies: ["terrapin-trace", "TraceFormat"], exclude: ["Golden"]),
        .testTarget(name: "FuzzTargetTests", dependencies: ["FuzzTargets", "NestedVMX"]),
        .testTarget(name: "EndToEndTests", dependencies: ["TraceFormat", "terrapin", "terrapin-trace"]),
    ]
)
