import TraceFormat

/// Renders a TraceSummary as a table or as JSON with a fixed key order.
public struct SummaryReport {
    public init(reader: TraceReader, summary: TraceSummary, addresses: AddressBreakdown? = nil, top: Int = 20) {
        self.reader = reader; self.summary = summary; self.addresses = addresses; self.top = top
    }

    let reader: TraceReader
    let summary: TraceSummary
    /// The per-address breakdown, when asked for.
    let addresses: AddressBreakdown?
    /// Address rows listed (0: all).
    let top: Int

    private var shownAddresses: ArraySlice<AddressBreakdown.Row> {
        guard let addresses else { return [] }
        return top > 0 ? addresses.rows.prefix(top) : addresses.rows[...]
    }

    private func addressText(_ r: AddressBreakdown.Row) -> String { "\(r.space.rawValue) \(hex(r.address))" }

    private func micros(_ ns: Double) -> String { fixed(ns / 1000, 1) }
    private func micros(_ ns: UInt64) -> String { micros(Double(ns)) }

    public func text() -> String {
        var out = "trace: \(printable(reader.path))\n"
        for (key, value) in reader.metadata.entries { out += "\(printable(key)): \(printable(value))\n" }
        out += "start time: \(reader.metadata.startTimeNanos) ns since the Unix epoch\n"
        if let selection = reader.selection {
            out += "selection: \(printable(selection)) (\(reader.recordCount) of \(reader.unfilteredRecordCount) records)\n"
        }
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
        if let addresses {
            out += "\nper address (I/O port, guest-physical address, MSR): \(addresses.rows.count) addresses, "
                + "\(addresses.records) exits\n"
            var t = Table(header: ["level", "reason", "handler", "access", "address", "count", "share%", "total",
                                   "mean", "min", "max", "unclaimed"], leftColumns: 5)
            for r in shownAddresses {
                t.add(["L\(r.level)", r.reason.name, r.handler.name, r.kind.name, addressText(r), "\(r.count)",
                       fixed(addresses.recordCount == 0 ? 0 : Double(r.count) * 100 / Double(addresses.recordCount), 2),
                       durationCell(r.total), durationCell(r.mean), durationCell(UInt64(r.min)), durationCell(UInt64(r.max)),
                       "\(r.unclaimed)"])
            }
            out += t.text
            let hidden = addresses.rows.count - shownAddresses.count
            if hidden > 0 { out += "(\(hidden) more addresses; --top 0 lists all)\n" }
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
        let addressRows = shownAddresses.map { r in
            "    {\"level\": \(r.level), \"reason\": \(jsonString(r.reason.name)), \"handler\": \(jsonString(r.handler.name)), "
                + "\"access\": \(jsonString(r.kind.name)), \"space\": \"\(r.space.rawValue)\", \"address\": \(r.address), "
                + "\"count\": \(r.count), \"total_ns\": \(r.total), \"mean_ns\": \(fixed(r.mean, 1)), \"min_ns\": \(r.min), "
                + "\"max_ns\": \(r.max), \"stddev_ns\": \(fixed(r.standardDeviation, 1)), \"unclaimed\": \(r.unclaimed)}"
        }
        let addressPart = addresses.map { a in
            ",\n  \"address_exits\": \(a.records),\n  \"address_count\": \(a.rows.count),\n  \"addresses\": "
                + list(addressRows, "[", "]")
        } ?? ""
        return """
            {
              "file": \(jsonString(reader.path)),
              "version": \(reader.version),
              "finished": \(reader.finished),
              "start_time_ns": \(reader.metadata.startTimeNanos),
              "metadata": \(list(metadata, "{", "}")),\(selectionJSON(reader))
              "records": \(summary.recordCount),
              "trailing_bytes": \(reader.trailingBytes),
              "first_timestamp_ns": \(opt(summary.firstTimestamp)),
              "last_timestamp_ns": \(opt(summary.lastTimestamp)),
              "run_duration_ns": \(summary.runDuration),
              "levels": \(list(levels, "[", "]")),
              "groups": \(list(groups, "[", "]")),
              "unclaimed": \(summary.unclaimed)\(addressPart)
            }

            """
    }
}


/// `"selection": {...},` and a newline with the indent of a top-level key, or nothing.
func selectionJSON(_ reader: TraceReader) -> String {
    guard let selection = reader.selection else { return "" }
    return "\n  \"selection\": {\"filter\": \(jsonString(selection)), \"records\": \(reader.recordCount), "
        + "\"of\": \(reader.unfilteredRecordCount)},"
}
