import ArgumentParser
import TraceFormat

/// The record filters every command takes.
struct FilterOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: ArgumentHelp("Keep records at or after this time since the run start (e.g. 10ms, 1.5s, 0).",
                               valueName: "time"))
    var from: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Keep records before this time since the run start.", valueName: "time"))
    var to: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Keep these levels (e.g. 2, or L1,L2).", valueName: "levels"))
    var level: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Keep these reasons, comma-separated (io-out, EPT_VIOLATION, VMREAD, ...).",
                               valueName: "reasons"))
    var reason: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Keep these handlers: l0, reflected, kernel (merged by align).", valueName: "handlers"))
    var handler: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Keep these vCPUs (e.g. 0,1).", valueName: "vcpus"))
    var vcpu: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Keep only the records of episodes whose root has one of these reasons (e.g. IO_INSTRUCTION).",
                               valueName: "reasons"))
    var episodeRoot: String?

    private func items(_ s: String) -> [String] {
        s.split(separator: ",").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
    }

    private func time(_ s: String, _ option: String) throws -> UInt64 {
        if let v = Double(s), v == 0 { return 0 }
        guard let ns = parseDuration(s) else {
            throw ValidationError("\(option) '\(s)' is not a time (e.g. 0, 250us, 10ms, 1.5s, or ns)")
        }
        return ns
    }

    private func reasons(_ s: String, _ option: String) throws -> Set<UInt64> {
        var keys = Set<UInt64>()
        for name in items(s) {
            guard let r = ExitReason(name: name) else {
                throw ValidationError("\(option): unknown reason '\(name)' (a kind such as io-out, or a VMX reason such as EPT_VIOLATION)")
            }
            keys.insert(r.key)
        }
        guard !keys.isEmpty else { throw ValidationError("\(option) needs at least one reason") }
        return keys
    }

    /// The filter, or a ValidationError naming the bad value.
    func make() throws -> RecordFilter {
        var f = RecordFilter()
        if let from { f.from = try time(from, "--from") }
        if let to { f.to = try time(to, "--to") }
        if let a = f.from, let b = f.to, a >= b {
            throw ValidationError("--from must be before --to")
        }
        if let level {
            for item in items(level) {
                let digits = item.hasPrefix("L") || item.hasPrefix("l") ? String(item.dropFirst()) : item
                guard let l = UInt8(digits), l >= 1 else { throw ValidationError("--level: '\(item)' is not a level (1, 2, L2, ...)") }
                f.levels.insert(l)
            }
            guard !f.levels.isEmpty else { throw ValidationError("--level needs at least one level") }
        }
        if let reason { f.reasons = try reasons(reason, "--reason") }
        if let handler {
            for item in items(handler) {
                switch item.lowercased() {
                case "l0": f.handlers.insert(Handler.l0.rawValue)
                case "reflected", "l1": f.handlers.insert(Handler.reflected.rawValue)
                case "kernel": f.handlers.insert(Handler.kernel.rawValue)
                default: throw ValidationError("--handler: '\(item)' is not a handler (l0, reflected or kernel)")
                }
            }
            guard !f.handlers.isEmpty else { throw ValidationError("--handler needs at least one handler") }
        }
        if let vcpu {
            for item in items(vcpu) {
                guard let v = UInt16(item) else { throw ValidationError("--vcpu: '\(item)' is not a vCPU index") }
                f.vcpus.insert(v)
            }
            guard !f.vcpus.isEmpty else { throw ValidationError("--vcpu needs at least one index") }
        }
        if let episodeRoot { f.episodeRoots = try reasons(episodeRoot, "--episode-root") }
        return f
    }

    func validate() throws { _ = try make() }

    /// The options given, as typed.
    var description: String {
        let given: [(String, String?)] = [("--from", from), ("--to", to), ("--level", level), ("--reason", reason),
                                          ("--handler", handler), ("--vcpu", vcpu), ("--episode-root", episodeRoot)]
        return given.compactMap { name, value in value.map { "\(name) \($0)" } }.joined(separator: " ")
    }

    /// `reader`, or only the records the filter keeps.
    func apply(to reader: TraceReader) throws -> TraceReader {
        let f = try make()
        if f.isEmpty { return reader }
        do {
            return try TraceReader(filtering: reader, by: f, description: description)
        } catch {
            throw fail("\(error)")
        }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
