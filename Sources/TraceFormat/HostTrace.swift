/// `kvm:*` events from the host, as `trace-cmd report` or `perf script`
/// prints them (Traces/README.md, "Lining up with host traces"):
///
///     terrapin-4021  [001]  8123.456789: kvm_exit: reason CPUID rip 0x1000 info 0 0
///     terrapin  4021 [001]  8123.456789123:  kvm:kvm_exit: vcpu 0 reason CPUID rip 0x1000 info1 0x0 ...
///
/// Read are `kvm_exit`, `kvm_entry` and `kvm_userspace_exit`, and the
/// events of operations KVM carries out (`kvm_cpuid`, `kvm_cr`, `kvm_msr`,
/// `kvm_pio`, `kvm_mmio`, `kvm_hypercall`), which are all a backend without
/// `kvm_exit` (kvm_pvm, docs: DESIGN "facts") reports: from each, the thread
/// id, the timestamp (seconds with up to 9 decimals, on the clock the tool
/// was told to use) and, for `kvm_exit`, the reason and the guest RIP; for an
/// operation, a reason named after it (`CPUID`, `CR_ACCESS`, `MSR_READ`,
/// `MSR_WRITE`, `IO_INSTRUCTION`, `VMCALL`, `mmio`). Other lines (headers,
/// other events) are skipped; a line with one of these events that cannot be
/// read is an error naming the line.
public struct HostTrace: Sendable {
    public enum Kind: Sendable, Equatable { case exit, entry, userspaceExit, operation }

    public struct Event: Sendable, Equatable {
        public var kind: Kind
        public var tid: UInt32
        /// ns on the host trace's clock.
        public var time: UInt64
        /// kvm_exit only: the reason as printed ("CPUID", "EPT_VIOLATION", "npf") and the guest RIP.
        public var reason: String
        public var rip: UInt64
    }

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var path: String
        public var line: Int
        public var message: String
        public var description: String { "\(path): line \(line): \(message)" }
    }

    public var events: [Event]
    /// Lines read, and lines skipped because they hold no event read here.
    public var lines: Int
    public var skipped: Int

    /// Parses `text`; errors name `path` and the line.
    public init(text: String, path: String) throws(ParseError) {
        var events: [Event] = []
        var lines = 0, skipped = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lines += 1
            let tokens = raw.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let at = tokens.firstIndex(where: { HostTrace.kind(of: $0) != nil }),
                  let kind = HostTrace.kind(of: tokens[at]) else {
                skipped += 1
                continue
            }
            func fail(_ m: String) -> ParseError { ParseError(path: path, line: lines, message: m) }
            let name = tokens[at].dropLast()
            guard at >= 2, let time = HostTrace.seconds(tokens[at - 1]) else {
                throw fail("cannot read the timestamp before \(name) (expected seconds such as 8123.456789:)")
            }
            guard let cpu = tokens[..<(at - 1)].lastIndex(where: { $0.hasPrefix("[") && $0.hasSuffix("]") }),
                  cpu >= 1, let tid = HostTrace.threadID(tokens[cpu - 1]) else {
                throw fail("cannot read the thread id before \(name) (expected COMM-TID [CPU] or COMM TID [CPU])")
            }
            var event = Event(kind: kind, tid: tid, time: time, reason: "", rip: 0)
            if kind == .operation {
                event.reason = HostTrace.operationReason(name, tokens[(at + 1)...])
            }
            if kind == .exit {
                let fields = tokens[(at + 1)...]
                guard let r = fields.firstIndex(of: "reason"), r + 1 < fields.endIndex else {
                    throw fail("kvm_exit without a reason")
                }
                event.reason = String(fields[r + 1])
                if let i = fields.firstIndex(of: "rip"), i + 1 < fields.endIndex {
                    let v = fields[i + 1]
                    guard let rip = UInt64(v.hasPrefix("0x") ? v.dropFirst(2) : v[...], radix: 16) else {
                        throw fail("kvm_exit rip '\(v)' is not a hex number")
                    }
                    event.rip = rip
                }
            }
            events.append(event)
        }
        guard events.contains(where: { $0.kind == .exit || $0.kind == .operation }) else {
            throw ParseError(path: path, line: lines,
                             message: "no kvm_exit (or kvm_cpuid, kvm_msr, ...) events "
                                + "(expected `trace-cmd report` or `perf script` output of kvm:* events)")
        }
        self.events = events
        self.lines = lines
        self.skipped = skipped
    }

    /// The event a token names ("kvm_exit:" or "kvm:kvm_exit:"), if one read here.
    static func kind(of token: Substring) -> Kind? {
        guard token.hasSuffix(":") else { return nil }
        var name = token.dropLast()
        if name.hasPrefix("kvm:") { name = name.dropFirst(4) }
        switch name {
        case "kvm_exit": return .exit
        case "kvm_entry": return .entry
        case "kvm_userspace_exit": return .userspaceExit
        case "kvm_cpuid", "kvm_cr", "kvm_msr", "kvm_pio", "kvm_mmio", "kvm_hypercall": return .operation
        default: return nil
        }
    }

    /// The reason an operation event stands for, as VMX names it where it can.
    static func operationReason(_ name: Substring, _ fields: ArraySlice<Substring>) -> String {
        let event = name.hasPrefix("kvm:") ? name.dropFirst(4) : name
        switch event {
        case "kvm_cpuid": return "CPUID"
        case "kvm_cr": return "CR_ACCESS"
        case "kvm_msr": return fields.first == "msr_write" ? "MSR_WRITE" : "MSR_READ"
        case "kvm_pio": return "IO_INSTRUCTION"
        case "kvm_hypercall": return "VMCALL"
        default: return "mmio"
        }
    }

    /// "8123.456789:" as ns (up to 9 decimals).
    static func seconds(_ token: Substring) -> UInt64? {
        guard token.hasSuffix(":") else { return nil }
        let t = token.dropLast()
        let parts = t.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = UInt64(parts[0]) else { return nil }
        var frac: UInt64 = 0
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 9, let f = UInt64(digits) else { return nil }
            frac = f
            for _ in digits.count..<9 { frac *= 10 }
        }
        let (ns, overflow) = whole.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? nil : ns + frac
    }

    /// "comm-4021" (trace-cmd), "4021" or "4000/4021" (perf script, pid/tid).
    static func threadID(_ token: Substring) -> UInt32? {
        if let tid = UInt32(token) { return tid }
        if let slash = token.lastIndex(of: "/"), let tid = UInt32(token[token.index(after: slash)...]) { return tid }
        guard let dash = token.lastIndex(of: "-") else { return nil }
        return UInt32(token[token.index(after: dash)...])
    }
}
