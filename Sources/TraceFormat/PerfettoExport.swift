/// Chrome Trace Event JSON for the Perfetto UI (and chrome://tracing).
///
/// `{"traceEvents": [...], "displayTimeUnit": "ns"}` with pid 1 and one
/// track (tid) per level and vCPU: tid = vcpu × 256 + level, so L1 and L2 of
/// vCPU 0 are tids 1 and 2, named "L1", "L2" ("L1 vCPU3" for other vCPUs)
/// by thread_name metadata events at the end. Exits are "X" complete events
/// named by their reason, ts and dur in µs with ns precision, relative to the
/// run start. An episode is an "X" slice on its root's track (normally L2)
/// that encloses the root exit; its L1 exits lie within its time span on the
/// L1 track. Events (interrupt-injected) are thread-scoped instant events.
///
/// No two slices on a track overlap partially. Slices are placed in file
/// order; a slice that would start before the previous slice on its track
/// started is moved to that start. An exit that starts inside an earlier
/// exit is moved to that exit's end. A slice that starts inside an episode
/// nests in it and is cut off at the episode's end (its args keep the
/// recorded timestamp and duration). Real traces of one vCPU need none of this.
public enum PerfettoExport {
    public static func write(_ reader: TraceReader, to out: TextOutput) {
        let analysis = EpisodeAnalysis(reader, topSequences: 0)
        var rooted: [UInt64: Int] = [:]
        for (i, e) in analysis.episodes.enumerated() { rooted[e.id] = i }
        var tracks: [Int: Track] = [:]
        let command = reader.metadata["command"] ?? reader.path
        out.write("{\"traceEvents\":[\n")
        out.write("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\(jsonString("terrapin: " + command))}}")
        var index = 0
        reader.forEach { r in
            defer { index += 1 }
            if r.episode != 0, let ei = rooted[r.episode], analysis.episodes[ei].firstRecord == index {
                let e = analysis.episodes[ei]
                let tid = Int(e.vcpu) * 256 + Int(e.rootLevel)
                let (s, end) = tracks[tid, default: Track()].place(e.start, e.end, parent: true)
                let name = "episode \(e.id): \(e.rootReason.name) ×\(e.exits)"
                out.write(",\n{\"name\":\(jsonString(name)),\"cat\":\"episode\",\"ph\":\"X\",\"ts\":\(micros(s)),"
                    + "\"dur\":\(micros(end - s)),\"pid\":1,\"tid\":\(tid),\"args\":{\"episode\":\(e.id),"
                    + "\"exits\":\(e.exits),\"records\":\(e.records),\"time_ns\":\(e.time)}}")
            }
            let tid = Int(r.vcpu) * 256 + Int(r.level)
            let reason = ExitReason(r).name
            let args = "\"args\":{\"record\":\(index),\"kind\":\"\(r.kind.name)\",\"handler\":\"\(r.handler.name)\","
                + "\"episode\":\(r.episode),\"timestamp_ns\":\(r.timestamp),\"duration_ns\":\(r.duration),"
                + "\"rip\":\"\(hex(r.rip))\",\"address\":\"\(hex(r.address))\",\"value\":\"\(hex(r.value))\"}}"
            if r.kind.isEvent {
                if tracks[tid] == nil { tracks[tid] = Track() }
                out.write(",\n{\"name\":\"\(reason)\",\"cat\":\"event\",\"ph\":\"i\",\"s\":\"t\",\"ts\":\(micros(r.timestamp)),"
                    + "\"pid\":1,\"tid\":\(tid),\(args)")
                return
            }
            let (s, end) = tracks[tid, default: Track()].place(r.timestamp, saturatingAdd(r.timestamp, UInt64(r.duration)),
                                                               parent: false)
            out.write(",\n{\"name\":\"\(reason)\",\"cat\":\"exit\",\"ph\":\"X\",\"ts\":\(micros(s)),\"dur\":\(micros(end - s)),"
                + "\"pid\":1,\"tid\":\(tid),\(args)")
        }
        let vcpus = Set(tracks.keys.map { $0 / 256 })
        for tid in tracks.keys.sorted() {
            let level = tid % 256, vcpu = tid / 256
            let name = vcpus == [0] ? "L\(level)" : "L\(level) vCPU\(vcpu)"
            out.write(",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":\(tid),\"args\":{\"name\":\"\(name)\"}}")
            out.write(",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":\(tid),"
                + "\"args\":{\"sort_index\":\(level * 65536 + vcpu)}}")
        }
        out.write("\n],\"displayTimeUnit\":\"ns\"}\n")
    }

    /// ns as µs with three decimals, exactly.
    static func micros(_ ns: UInt64) -> String {
        let frac = String(ns % 1000)
        return "\(ns / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
    }

    /// The open slices of one track, innermost last.
    struct Track {
        var open: [(end: UInt64, parent: Bool)] = []
        var lastStart: UInt64 = 0

        /// Where a slice [start, end) goes so that it nests in or follows every
        /// slice placed before it (see the type's comment). `closed` is called
        /// with the end of each open slice this closes, innermost first.
        @inline(__always)
        mutating func place(_ start: UInt64, _ end: UInt64, parent: Bool,
                            closed: (UInt64) -> Void = { _ in }) -> (UInt64, UInt64) {
            var s = max(start, lastStart)
            while let top = open.last {
                if top.end <= s { closed(top.end); open.removeLast(); continue }
                if !top.parent { s = top.end; closed(top.end); open.removeLast(); continue }
                break
            }
            var e = max(end, s)
            if let top = open.last { e = min(e, top.end) }
            open.append((e, parent))
            lastStart = s
            return (s, e)
        }
    }
}
