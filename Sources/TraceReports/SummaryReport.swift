import TraceFormat

/// Renders a TraceSummary as a table or as JSON with a fixed key order.
public struct SummaryReport {
    public init(reader: TraceReader, summary: TraceSummary) {
        self.reader = reader; self.summary = summary
    }

    let reader: TraceReader
    let summary: TraceSummary

    private func micros(_ ns: Double) -> String { fixed(ns / 1000, 1) }
    private func micros(_ ns: UInt64) -> String { micros(Double(ns)) }

    public func text() -> String {
        var out = "trace: \(printable(reader.path))\n"
        for (key, value) in reader.metadata.entries { out += "\(printable(key)): \(printable(value))\n" }
        out += "start time: \(reader.metadata.startTimeNanos) ns since the Unix epoch\n"
        out += "records: \(summary.recordCount)\n"
        out += "run duration: \(durationText(summary.runDuration))\n"
        for level in summary.levels {
            let rate = level.exitsPerSecond.map { fixed($0, 1) } ?? "-"
            out += "exits/s L\(level.level): \(rate) (\(level.exits) exits)\n"
        }
        if reader.recordCount > 0, case let last = reader[reader.recordCount - 1], last.kind == .stopped {
            out += "note: the run was stopped by \(ExitKind.signalName(last.address)) (the last record)\n"
        }
        if !reader.finished {
            out += "note: unfinished run (the writer was killed or never finished); "
            out += "the record count was derived from the file size"
            if reader.trailingBytes > 0 { out += " and a \(reader.trailingBytes)-byte partial record was ignored" }
            out += "\n"
        }
        out += "\n"

        var table = Table(header: ["level", "reason", "handler", "count", "share%", "total ms",
                                   "mean µs", "p50 µs", "p90 µs", "p99 µs", "max µs"], leftColumns: 3)
        for g in summary.groups {
            table.add([
                "L\(g.level)", g.reason.name, g.handler.name, String(g.count),
                fixed(g.share * 100, 2), fixed(Double(g.totalDuration) / 1e6, 3),
                micros(g.meanDuration), micros(g.p50), micros(g.p90), micros(g.p99),
                micros(UInt64(g.maxDuration)),
            ])
        }
        out += table.text
        if summary.unclaimed > 0 {
            let parts = summary.groups.filter { $0.unclaimed > 0 }
                .map { "L\($0.level) \($0.reason.name) \($0.handler.name): \($0.unclaimed)" }
            out += "\nunclaimed accesses: \(summary.unclaimed) (\(parts.joined(separator: ", ")))\n"
        }
        return out
    }

    public func json() -> String {
        func opt(_ v: UInt64?) -> String { v.map(String.init) ?? "null" }
        var seen = Set<String>()
        let metadata = reader.metadata.entries
            .filter { seen.insert($0.key).inserted }   // first value wins, keeps the object valid
            .map { "    \(jsonString($0.key)): \(jsonString($0.value))" }
        let levels = summary.levels.map { l in
            "    {\"level\": \(l.level), \"records\": \(l.records), \"exits\": \(l.exits), "
                + "\"exits_per_second\": \(l.exitsPerSecond.map { fixed($0, 3) } ?? "null")}"
        }
        let groups = summary.groups.map { g in
            "    {\"level\": \(g.level), \"reason\": \(jsonString(g.reason.name)), "
                + "\"reason_source\": \(jsonString(g.reason.source)), \"reason_code\": \(g.reason.code), "
                + "\"handler\": \(jsonString(g.handler.name)), \"count\": \(g.count), "
                + "\"share\": \(fixed(g.share, 6)), \"total_ns\": \(g.totalDuration), "
                + "\"mean_ns\": \(fixed(g.meanDuration, 1)), \"p50_ns\": \(g.p50), \"p90_ns\": \(g.p90), "
                + "\"p99_ns\": \(g.p99), \"max_ns\": \(g.maxDuration), \"unclaimed\": \(g.unclaimed)}"
        }
        func list(_ items: [String], _ open: String, _ close: String) -> String {
            items.isEmpty ? open + close : open + "\n" + items.joined(separator: ",\n") + "\n  " + close
        }
        return """
            {
              "file": \(jsonString(reader.path)),
              "version": \(reader.version),
              "finished": \(reader.finished),
              "start_time_ns": \(reader.metadata.startTimeNanos),
              "metadata": \(list(metadata, "{", "}")),
              "records": \(summary.recordCount),
              "trailing_bytes": \(reader.trailingBytes),
              "first_timestamp_ns": \(opt(summary.firstTimestamp)),
              "last_timestamp_ns": \(opt(summary.lastTimestamp)),
              "run_duration_ns": \(summary.runDuration),
              "levels": \(list(levels, "[", "]")),
              "groups": \(list(groups, "[", "]")),
              "unclaimed": \(summary.unclaimed)
            }

            """
    }
}

