import TraceFormat

/// Renders a TraceSummary as a table or as JSON with a fixed key order.
public struct SummaryReport {
    /// The order of the table rows: by (level, reason, handler), or by a
    /// figure, largest first (ties in the default order).
    public enum Order: String, CaseIterable, Sendable {
        case reason, count, total, mean, p50, p99, max
    }

    public init(reader: TraceReader, summary: TraceSummary, addresses: AddressBreakdown? = nil, top: Int = 20,
                order: Order = .reason) {
        self.reader = reader; self.summary = summary; self.addresses = addresses; self.top = top; self.order = order
    }

    let order: Order

    /// The groups in `order` (the summary keeps them by level, reason, handler).
    private var groups: [TraceSummary.Group] {
        func key(_ g: TraceSummary.Group) -> Double {
            switch order {
            case .reason: 0
            case .count: Double(g.count)
            case .total: Double(g.totalDuration)
            case .mean: g.meanDuration
            case .p50: Double(g.p50)
            case .p99: Double(g.p99)
            case .max: Double(g.maxDuration)
            }
        }
        guard order != .reason else { return summary.groups }
        // Each key once (a percentile walks the histogram), then sort.
        let keys = summary.groups.map(key)
        return summary.groups.indices.sorted { (keys[$0], $1) > (keys[$1], $0) }.map { summary.groups[$0] }
    }

    /// The address rows in `order` (most exits first for `reason` and `count`; p50 and p99 are not kept, so by mean).
    private var addressRows: [AddressBreakdown.Row] {
        guard let addresses else { return [] }
        func key(_ r: AddressBreakdown.Row) -> Double {
            switch order {
            case .reason, .count: Double(r.count)
            case .total: Double(r.total)
            case .mean, .p50, .p99: r.mean
            case .max: Double(r.max)
            }
        }
        let rows = addresses.rows, keys = rows.map(key)
        return rows.indices.sorted { (keys[$0], $1) > (keys[$1], $0) }.map { rows[$0] }
    }

    let reader: TraceReader
    let summary: TraceSummary
    /// The per-address breakdown, when asked for.
    let addresses: AddressBreakdown?
    /// Address rows listed (0: all).
    let top: Int

    private var shownAddresses: ArraySlice<AddressBreakdown.Row> {
        let rows = addressRows
        return top > 0 ? rows.prefix(top) : rows[...]
    }

    private func addressText(_ r: AddressBreakdown.Row) -> String { "\(r.space.rawValue) \(hex(r.address))" }


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

        var table = Table(header: ["level", "reason", "handler", "count", "share%", "total",
                                   "mean", "stddev", "min", "p50", "p90", "p99", "max"], leftColumns: 3)
        for g in groups {
            table.add([
                "L\(g.level)", g.reason.name, g.handler.name, String(g.count),
                fixed(g.share * 100, 2), durationCell(g.totalDuration),
                durationCell(g.meanDuration), durationCell(g.standardDeviation), durationCell(UInt64(g.minDuration)),
                durationCell(g.p50), durationCell(g.p90), durationCell(g.p99), durationCell(UInt64(g.maxDuration)),
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
            let shown = shownAddresses
            for r in shown {
                t.add(["L\(r.level)", r.reason.name, r.handler.name, r.kind.name, addressText(r), "\(r.count)",
                       fixed(addresses.recordCount == 0 ? 0 : Double(r.count) * 100 / Double(addresses.recordCount), 2),
                       durationCell(r.total), durationCell(r.mean), durationCell(UInt64(r.min)), durationCell(UInt64(r.max)),
                       "\(r.unclaimed)"])
            }
            out += t.text
            let hidden = addresses.rows.count - shown.count
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
        let groupItems = groups.map { g in
            "    {\"level\": \(g.level), \"reason\": \(jsonString(g.reason.name)), "
                + "\"reason_source\": \(jsonString(g.reason.source)), \"reason_code\": \(g.reason.code), "
                + "\"handler\": \(jsonString(g.handler.name)), \"count\": \(g.count), "
                + "\"share\": \(fixed(g.share, 6)), \"total_ns\": \(g.totalDuration), "
                + "\"mean_ns\": \(fixed(g.meanDuration, 1)), \"stddev_ns\": \(fixed(g.standardDeviation, 1)), "
                + "\"min_ns\": \(g.minDuration), \"p50_ns\": \(g.p50), \"p90_ns\": \(g.p90), "
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
              "groups": \(list(groupItems, "[", "]")),
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
