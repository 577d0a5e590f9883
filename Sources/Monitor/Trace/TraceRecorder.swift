#if canImport(Glibc)
import Glibc
#endif
import KVM
import NestedVMX
import TraceFormat

/// Builds the trace header for a run and hands records to the writer.
enum TraceRecorder {
    static func metadata(config: MachineConfig) -> TraceMetadata {
        var uts = utsname()
        uname(&uts)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let start = TraceMetadata.realtimeNow()
        var entries: [(key: String, value: String)] = [
            ("command", config.invocation),
            ("image", config.imagePath),
            ("cmdline", config.guestCommandLine),
            ("memory", String(config.memorySize)),
            ("vcpus", "1"),
            ("kernel", "\(field(uts.sysname)) \(field(uts.release)) \(field(uts.machine))"),
            ("clock", "CLOCK_MONOTONIC ns since run start"),
            ("started", iso8601(nanos: start)),
            ("monitor", "terrapin"),
            // Patched by `startClock` when the run starts (Traces/README.md).
            (TraceMetadata.monotonicBaseKey, String(repeating: " ", count: TraceMetadata.monotonicBaseWidth)),
            (TraceMetadata.vcpu0ThreadKey, String(repeating: " ", count: TraceMetadata.threadWidth)),
            // Patched at the end of the run when the guest reported its
            // unit of work (WorkReportPort; Traces/README.md).
            (TraceMetadata.iterationsKey, String(repeating: " ", count: TraceMetadata.iterationsWidth)),
        ]
        for (i, m) in config.modules.enumerated() { entries.append(("module\(i)", m)) }
        return TraceMetadata(entries, startTimeNanos: start)
    }

    /// Records the CLOCK_MONOTONIC time zero of the records and the thread
    /// that runs vCPU 0 (the caller's), for lining up with host traces.
    static func startClock(_ trace: TraceWriter, runStart: UInt64) throws(TraceError) {
        try trace.patchMetadata(TraceMetadata.monotonicBaseKey,
                                TraceMetadata.padded(runStart, width: TraceMetadata.monotonicBaseWidth))
        let tid = UInt64(max(0, currentThreadID()))
        try trace.patchMetadata(TraceMetadata.vcpu0ThreadKey, TraceMetadata.padded(tid, width: TraceMetadata.threadWidth))
    }

    /// UTC time as "YYYY-MM-DDTHH:MM:SS.mmmZ".
    static func iso8601(nanos: UInt64) -> String {
        var seconds = time_t(nanos / 1_000_000_000)
        var tm = tm()
        gmtime_r(&seconds, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let ms = Int(nanos / 1_000_000 % 1000)
        let msText = ms < 10 ? "00\(ms)" : (ms < 100 ? "0\(ms)" : "\(ms)")
        return "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)).\(msText)Z"
    }
}

/// How a VMX instruction's outcome is packed into a trace record's value:
/// bits 7:0 the kind (0 VMsucceed, 1 VMfailInvalid, 2 VMfailValid, 3 fault,
/// 4 VM entry, 5 VM-entry failure exit), bits 15:8 the VM-instruction error,
/// the exception vector or the basic exit reason (33 or 34).
public enum VMXOutcomeCode {
    public static func encode(_ result: VMXResult) -> UInt64 {
        switch result {
        case .succeed: 0
        case .failInvalid: 1
        case let .failValid(error): 2 | UInt64(error & 0xff) << 8
        case let .fault(e): 3 | UInt64(e.vector) << 8
        case .vmEntry: 4
        case let .entryFailed(f): 5 | UInt64((f.exitReason ?? 0) & 0xff) << 8
        }
    }
}
