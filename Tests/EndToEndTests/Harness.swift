import Foundation
import XCTest

/// Runs the built `terrapin` and `terrapin-trace` binaries on the guests in
/// Guests/build, which it builds (once per test process) with make.
enum Harness {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The directory holding the products of this build (where the test bundle lives).
    static var binDirectory: URL {
        let candidates = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
                          packageRoot.appendingPathComponent(".build/debug")]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("terrapin").path) }
            ?? candidates[2]
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs an executable to completion, capturing its output.
    static func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.currentDirectoryURL = packageRoot
        // Output goes to files, so neither stream can fill a pipe and block the child.
        let outPath = temporaryPath("stdout-\(UUID().uuidString)"), errPath = temporaryPath("stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outPath); try? FileManager.default.removeItem(atPath: errPath) }
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let outData = FileManager.default.contents(atPath: outPath) ?? Data()
        let errData = FileManager.default.contents(atPath: errPath) ?? Data()
        return Result(status: process.terminationStatus,
                      stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    static func terrapin(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        try run(binDirectory.appendingPathComponent("terrapin"), arguments, environment: environment)
    }

    static func terrapinTrace(_ arguments: [String]) throws -> Result {
        try run(binDirectory.appendingPathComponent("terrapin-trace"), arguments)
    }

    static func guest(_ name: String) -> String { "Guests/build/\(name).elf" }

    nonisolated(unsafe) private static var guestsBuilt: Bool?

    /// Skips (visibly) without /dev/kvm; builds the guests once.
    static func prepare() throws {
        guard FileManager.default.fileExists(atPath: "/dev/kvm") else {
            throw XCTSkip("/dev/kvm is missing: end-to-end tests need KVM")
        }
        if guestsBuilt == nil {
            let make = try run(URL(fileURLWithPath: "/usr/bin/make"), ["-s", "-C", "Guests"])
            guestsBuilt = make.status == 0
            if make.status != 0 { XCTFail("building the guests failed:\n\(make.stdout)\n\(make.stderr)") }
        }
        guard guestsBuilt == true else { throw XCTSkip("guests did not build (see the failure above)") }
        guard FileManager.default.isExecutableFile(atPath: binDirectory.appendingPathComponent("terrapin").path) else {
            XCTFail("terrapin is not built in \(binDirectory.path); run `swift build` first")
            throw XCTSkip("terrapin binary missing")
        }
    }

    /// A fresh path in a temporary directory.
    static func temporaryPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("terrapin-e2e-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }
}
