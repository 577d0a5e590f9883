#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import TraceFormat

struct Align: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Line a trace up with the host's kvm:* events (trace-cmd report or perf script text) of the same run.",
        discussion: """
            Capture on CLOCK_MONOTONIC: trace-cmd record -C mono -e kvm, then trace-cmd report; or \
            perf record -k CLOCK_MONOTONIC -e 'kvm:*', then perf script. Exits KVM handled in the \
            kernel (never seen by L0) are counted by reason; with --out they are merged into a new \
            trace as kernel-exit records with handler kernel, which every command then reads. \
            See Traces/README.md.
            """
    )

    @Argument(help: "The trace file (.trc).")
    var trace: String

    @Argument(help: "The host events: trace-cmd report or perf script output.")
    var host: String

    @Option(help: "Write the trace with the kernel-handled exits merged in to this file.")
    var out: String?

    @Option(help: "The host thread that ran vCPU 0 (default: the trace's vcpu0_tid).")
    var tid: UInt32?

    @Option(help: "CLOCK_MONOTONIC ns of the trace's time zero (default: the trace's monotonic_base_ns).")
    var base: UInt64?

    func run() throws {
        let reader = try openTrace(trace)
        func number(_ key: String) throws -> UInt64? {
            switch reader.metadata.number(key) {
            case .success(let v): return v
            case .failure(let e): throw fail("\(trace): metadata \(e.key)='\(e.value)' is not a number")
            }
        }
        guard let base = try base ?? number(TraceMetadata.monotonicBaseKey) else {
            throw fail("\(trace): no \(TraceMetadata.monotonicBaseKey) in the metadata (older traces and runs that "
                       + "never started lack it): give --base NS")
        }
        guard let tidValue = try tid.map(UInt64.init) ?? number(TraceMetadata.vcpu0ThreadKey), let tid = UInt32(exactly: tidValue) else {
            throw fail("\(trace): no \(TraceMetadata.vcpu0ThreadKey) in the metadata: give --tid TID")
        }
        let text: String
        do { text = try readText(host) } catch { throw fail("\(host): \(error)") }
        let events: HostTrace
        do { events = try HostTrace(text: text, path: host) } catch { throw fail("\(error)") }
        let a = HostAlignment(trace: reader, host: events, base: base, tid: tid)
        var s = "trace: \(reader.path)\nhost trace: \(host) (\(events.lines) lines, \(events.events.count) kvm events"
        s += a.otherThreadEvents > 0 ? ", \(a.otherThreadEvents) of other threads left out)\n" : ")\n"
        s += "vCPU 0 thread \(tid), time zero at CLOCK_MONOTONIC \(base) ns\n"
        s += "exits on the vCPU thread (kvm_exit, or kvm_cpuid, kvm_pio, ... without it): \(a.exits) "
            + "(\(a.outsideRun) before the run, \(a.unmatched) at the end without an entry)\n"
        s += "  to userspace (L0): \(a.toUserspace); the trace has \(a.traceExitsInSpan) exits in that span\n"
        s += "  handled in the kernel: \(a.kernelHandled)\n"
        if a.exits > 0 && a.toUserspace == 0 {
            s += "note: no exit reached userspace on this thread: is the clock CLOCK_MONOTONIC (trace-cmd -C mono, perf -k CLOCK_MONOTONIC) and the thread right?\n"
        }
        if !a.byReason.isEmpty {
            s += "\nkernel-handled exits:\n"
            var rows = [["reason", "count", "total", "mean"]]
            for r in a.byReason {
                rows.append([r.reason, "\(r.count)", durationCell(Double(r.totalNanos)), durationCell(Double(r.totalNanos) / Double(r.count))])
            }
            let widths = (0..<4).map { c in rows.map { $0[c].count }.max() ?? 0 }
            for row in rows {
                s += pad(row[0], widths[0], right: false) + "  " + (1..<4).map { pad(row[$0], widths[$0]) }.joined(separator: "  ") + "\n"
            }
        }
        if let out {
            if FileIdentity.clash(output: out, inputs: [trace, host]) != nil {
                throw fail("\(out): is an input; refusing to overwrite it")
            }
            do { try a.writeMerged(reader, hostPath: host, to: out) } catch { throw fail("\(error)") }
            s += "\nmerged: \(out) (\(reader.recordCount + a.records.count) records, \(a.records.count) kernel-exit)\n"
        }
        writeStdout(s)
    }
}

/// The whole of a text file.
private func readText(_ path: String) throws -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw TextFileError(String(cString: strerror(errno))) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { throw TextFileError("not a regular file") }
    var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw TextFileError(n < 0 ? String(cString: strerror(errno)) : "shorter than its size") }
        done += n
    }
    return String(decoding: bytes, as: UTF8.self)
}

private struct TextFileError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
