import TraceFormat

/// Renders a TraceComparison as tables or JSON.
public struct CompareReport {
    public init(a: TraceReader, b: TraceReader, comparison: TraceComparison, per: String?) {
        self.a = a; self.b = b; self.comparison = comparison; self.per = per
    }

    let a: TraceReader
    let b: TraceReader
    let comparison: TraceComparison
    /// The metadata key of the unit of work, if normalised.
    let per: String?

    private var normalised: Bool { comparison.unitsA != nil }

    private func count(_ v: Double) -> String { normalised ? significant(v) : fixed(v, 0) }
    /// Time in µs (per unit when normalised).
    private func time(_ ns: Double) -> String { normalised ? significant(ns / 1000) : fixed(ns / 1000, 1) }

    /// At least three decimals, more for small values (three significant digits, at most nine decimals).
    private func significant(_ v: Double) -> String {
        var decimals = 3
        var limit = 0.1
        while v != 0 && abs(v) < limit && decimals < 9 { decimals += 1; limit /= 10 }
        return fixed(v, decimals)
    }
    private func change(_ c: Double?, _ a: UInt64, _ b: UInt64) -> String {
        if let c { return (c >= 0 ? "+" : "") + fixed(c * 100, 1) + "%" }
        return a == 0 && b == 0 ? "0.0%" : "new"
    }
    private func ratio(_ r: Double?) -> String { r.map { fixed($0, 3) } ?? "-" }

    private func rowCells(_ r: TraceComparison.Row) -> [String] {
        [count(r.normCountA), count(r.normCountB), ratio(r.countRatio), change(r.countChange, r.countA, r.countB),
         time(r.normTimeA), time(r.normTimeB), ratio(r.timeRatio), change(r.timeChange, r.timeA, r.timeB),
         r.exceeds(comparison.threshold) ? "*" : ""]
    }

    public func text() -> String {
        var out = "A: \(printable(a.path))" + (a.metadata["command"].map { " (\(printable($0)))" } ?? "") + "\n"
        out += "B: \(printable(b.path))" + (b.metadata["command"].map { " (\(printable($0)))" } ?? "") + "\n"
        if let per, let ua = comparison.unitsA, let ub = comparison.unitsB {
            out += "normalised per unit of '\(per)': A \(fixed(ua, 0)), B \(fixed(ub, 0)); counts and µs are per unit\n"
        } else {
            out += "not normalised (use --per KEY to divide by a unit of work from the metadata)\n"
        }
        out += "threshold: \(fixed(comparison.threshold * 100, 1))% (* = beyond it, or in one trace only)\n\n"
        let numbers = ["count A", "count B", "ratio", "change", "time A µs", "time B µs", "ratio", "change", ""]
        var levels = Table(header: ["level"] + numbers, leftColumns: 1)
        for r in comparison.levels { levels.add(["L\(r.level)"] + rowCells(r)) }
        out += levels.text + "\n"
        var rows = Table(header: ["level", "reason", "handler"] + numbers, leftColumns: 3)
        for r in comparison.rows {
            rows.add(["L\(r.level)", r.reason?.name ?? "", r.handler?.name ?? ""] + rowCells(r))
        }
        out += rows.text
        let flagged = comparison.flagged.count
        out += "\n\(flagged) of \(comparison.rows.count) rows differ by more than \(fixed(comparison.threshold * 100, 1))%\n"
        return out
    }

    public func json() -> String {
        func num(_ v: Double?) -> String { v.map { fixed($0, 6) } ?? "null" }
        func row(_ r: TraceComparison.Row) -> String {
            var s = "{\"level\": \(r.level), "
            if let reason = r.reason, let handler = r.handler {
                s += "\"reason\": \(jsonString(reason.name)), \"reason_source\": \"\(reason.source)\", "
                    + "\"reason_code\": \(reason.code), \"handler\": \(jsonString(handler.name)), "
            }
            return s + "\"count_a\": \(r.countA), \"count_b\": \(r.countB), \"time_a_ns\": \(r.timeA), \"time_b_ns\": \(r.timeB), "
                + "\"norm_count_a\": \(num(r.normCountA)), \"norm_count_b\": \(num(r.normCountB)), "
                + "\"norm_time_a_ns\": \(num(r.normTimeA)), \"norm_time_b_ns\": \(num(r.normTimeB)), "
                + "\"count_ratio\": \(num(r.countRatio)), \"time_ratio\": \(num(r.timeRatio)), "
                + "\"count_change\": \(num(r.countChange)), \"time_change\": \(num(r.timeChange)), "
                + "\"flagged\": \(r.exceeds(comparison.threshold))}"
        }
        return """
            {
              "a": \(jsonString(a.path)),
              "b": \(jsonString(b.path)),
              "per": \(per.map(jsonString) ?? "null"),
              "units_a": \(num(comparison.unitsA)),
              "units_b": \(num(comparison.unitsB)),
              "threshold": \(fixed(comparison.threshold, 6)),
              "levels": \(jsonList(comparison.levels.map(row))),
              "rows": \(jsonList(comparison.rows.map(row))),
              "flagged": \(comparison.flagged.count)
            }

            """
    }
}
