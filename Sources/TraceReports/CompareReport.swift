import TraceFormat

/// Renders a TraceComparison as tables or JSON.
public struct CompareReport {
    public init(a: TraceReader, b: TraceReader, comparison: TraceComparison, per: String?) {
        self.init(a: [a], b: [b], comparison: comparison, per: per)
    }

    /// Several runs per side (the first of each names the side).
    public init(a: [TraceReader], b: [TraceReader], comparison: TraceComparison, per: String?) {
        self.runsA = a; self.runsB = b; self.comparison = comparison; self.per = per
    }

    let runsA: [TraceReader]
    let runsB: [TraceReader]
    private var a: TraceReader { runsA[0] }
    private var b: TraceReader { runsB[0] }
    let comparison: TraceComparison
    /// The metadata key of the unit of work, if normalised.
    let per: String?
    /// With the default normalisation: the traces that have no `iterations`
    /// (their guest reported no unit of work), so the output can say why it
    /// is not normalised per iteration.
    public var withoutIterations: [String] = []

    private var normalised: Bool { comparison.unitsA != nil }
    private var settings: TraceComparison.Settings { comparison.settings }

    private func count(_ v: Double) -> String {
        guard normalised else { return fixed(v, 0) }
        return per == "run" ? fixed(v, v == v.rounded() ? 0 : 1) : significant(v)
    }
    /// Total time (per unit when normalised), with its unit.
    private func total(_ ns: Double) -> String {
        normalised && per != "run" ? significant(ns / 1000) + " µs" : durationCell(ns)
    }

    /// At least three decimals, more for small values (three significant digits, at most nine decimals).
    private func significant(_ v: Double) -> String {
        var decimals = 3
        var limit = 0.1
        while v != 0 && abs(v) < limit && decimals < 9 { decimals += 1; limit /= 10 }
        return fixed(v, decimals)
    }
    private func percent(_ c: Double) -> String { (c >= 0 ? "+" : "") + fixed(c * 100, 1) + "%" }
    private func change(_ c: Double?, _ a: UInt64, _ b: UInt64) -> String {
        if let c { return percent(c) }
        return a == 0 && b == 0 ? "0.0%" : "new"
    }
    private func interval(_ lo: Double?, _ hi: Double?) -> String {
        guard let lo, let hi else { return "" }
        return "[" + percent(lo) + ", " + percent(hi) + "]"
    }
    /// A quantile change: "+16.7% [+10.1%, +20.0%]", or in ns when A's quantile is 0.
    private func quantileChange(_ t: TraceComparison.Tested?, unit: (Double) -> String) -> String {
        guard let d = t?.delta else { return "-" }
        if let c = d.change { return percent(c) + (d.low == nil ? "" : " " + interval(d.lowChange, d.highChange)) }
        return d.delta == 0 ? "0.0%" : (d.delta > 0 ? "+" : "-") + unit(abs(d.delta))
    }
    private func cell(_ ns: Double?) -> String { ns.map(durationCell) ?? "-" }
    private func exitsValue(_ v: Double) -> String { fixed(v, v == v.rounded() ? 0 : 1) }

    private func flagText(_ flags: [String], enough: Bool) -> String {
        flags.isEmpty ? (enough ? "" : "few") : "* " + flags.joined(separator: ",")
    }

    public func text() -> String {
        let level = Int((settings.bootstrap.confidence * 100).rounded())
        var out = ""
        for (name, runs) in [("A", runsA), ("B", runsB)] {
            out += "\(name): \(printable(runs[0].path))" + (runs[0].metadata["command"].map { " (\(printable($0)))" } ?? "") + "\n"
            if runs.count > 1 {
                out += "   and \(runs.count - 1) more run\(runs.count > 2 ? "s" : ""): "
                    + runs.dropFirst().map { printable($0.path) }.joined(separator: ", ") + "\n"
            }
        }
        if let selection = a.selection {
            out += "selection: \(printable(selection)) (A \(runsA.map(\.recordCount).reduce(0, +)) of "
                + "\(runsA.map(\.unfilteredRecordCount).reduce(0, +)) records, B \(runsB.map(\.recordCount).reduce(0, +)) of "
                + "\(runsB.map(\.unfilteredRecordCount).reduce(0, +)))\n"
        }
        if let per, let ua = comparison.unitsA, let ub = comparison.unitsB {
            out += per == "run"
                ? "normalised per run: A \(fixed(ua, 0)) runs, B \(fixed(ub, 0)) runs; counts and total times are per run\n"
                : "normalised per unit of '\(per)': A \(fixed(ua, 0)), B \(fixed(ub, 0)); counts and total times are per unit\n"
        } else {
            out += "not normalised (use --per KEY to divide by a unit of work from the metadata)\n"
        }
        if !withoutIterations.isEmpty {
            out += "note: not per iteration: no '\(TraceMetadata.iterationsKey)' in "
                + withoutIterations.map(printable).joined(separator: ", ")
                + " (the guest reported no unit of work; the storm guests report their loop count, "
                + "see Traces/README.md; --per cmdline takes it from the command line)\n"
        }
        out += "test: handling-time p50 and p99 by a block bootstrap (\(settings.bootstrap.blocks) blocks, "
            + "\(settings.bootstrap.resamples) resamples, seed \(settings.bootstrap.seed)), counts by a Poisson interval\n"
        out += "intervals: \(level)% for all \(comparison.tests) tests together (Bonferroni: "
            + "\(fixed(comparison.perTestConfidence * 100, 3))% each)\n"
        if settings.runNoise > 0 {
            out += "note: with one run on a side, intervals cover how times vary inside a run, not between runs; "
                + "a time change is flagged only when its interval lies beyond ±\(fixed(settings.runNoise * 100, 1))% "
                + "(--run-noise; give more runs with --a-run/--b-run)\n"
        }
        out += "flag (*): the interval excludes no change and the change is beyond ±\(fixed(settings.threshold * 100, 1))%; "
            + "rows with fewer than \(settings.minCount) exits on a side are not tested (few)\n\n"

        var levels = Table(header: ["level", "exits A", "exits B", "change", "interval", "time A", "time B",
                                    "change", "flag"], leftColumns: 1, leftLast: true)
        for r in comparison.levels {
            levels.add(["L\(r.level)", count(r.count.normA), count(r.count.normB), change(r.count.change, r.count.a, r.count.b),
                        interval(r.count.low, r.count.high), total(r.normTimeA), total(r.normTimeB),
                        change(r.timeChange, r.timeA, r.timeB), flagText(r.flagged ? ["count"] : [], enough: true)])
        }
        out += levels.text + "\n"

        var rows = Table(header: ["level", "reason", "handler", "count A", "count B", "change", "p50 A", "p50 B",
                                  "p50 change [interval]", "p99 A", "p99 B", "p99 change [interval]", "flag"],
                         leftColumns: 3, leftLast: true)
        for r in comparison.rows {
            rows.add(["L\(r.level)", r.reason?.name ?? "", r.handler?.name ?? "",
                      count(r.count.normA), count(r.count.normB), change(r.count.change, r.count.a, r.count.b),
                      cell(r.p50A), cell(r.p50B), quantileChange(r.p50, unit: durationCell),
                      cell(r.p99A), cell(r.p99B),
                      quantileChange(r.p99, unit: durationCell), flagText(r.flags, enough: r.enoughSamples)])
        }
        out += rows.text

        if !comparison.episodes.isEmpty {
            out += "\nepisodes per root reason (exit multiplication: L0 exits per episode; episode time):\n"
            var eps = Table(header: ["level", "root", "episodes A", "episodes B", "change", "exits mean A", "exits mean B",
                                     "exits p50 A", "exits p50 B", "exits p99 A", "exits p99 B", "exits p99 change",
                                     "time p50 A", "time p50 B", "time p50 change [interval]", "flag"],
                            leftColumns: 2, leftLast: true)
            for e in comparison.episodes {
                eps.add(["L\(e.level)", e.reason.name, count(e.episodes.normA), count(e.episodes.normB),
                         change(e.episodes.change, e.episodes.a, e.episodes.b),
                         e.meanMultiplicationA.map { fixed($0, 2) } ?? "-", e.meanMultiplicationB.map { fixed($0, 2) } ?? "-",
                         e.multiplicationA.map { exitsValue($0.p50) } ?? "-", e.multiplicationB.map { exitsValue($0.p50) } ?? "-",
                         e.multiplicationA.map { exitsValue($0.p99) } ?? "-", e.multiplicationB.map { exitsValue($0.p99) } ?? "-",
                         quantileChange(e.multiplicationP99, unit: exitsValue),
                         cell(e.timeA?.p50), cell(e.timeB?.p50),
                         quantileChange(e.timeP50, unit: durationCell), flagText(e.flags, enough: e.enoughSamples)])
            }
            out += eps.text
        }
        let few = comparison.rows.filter { !$0.enoughSamples }.count
        out += "\n\(comparison.flagged.count) of \(comparison.rows.count) rows flagged"
            + (few > 0 ? " (\(few) with too few exits to test their times)" : "")
        if !comparison.episodes.isEmpty {
            out += "; \(comparison.flaggedEpisodes.count) of \(comparison.episodes.count) episode roots flagged"
        }
        return out + "\n"
    }

    public func json() -> String {
        func num(_ v: Double?) -> String {
            guard let v, v.isFinite else { return "null" }   // JSON has no infinity
            return fixed(v, 6)
        }
        func flags(_ f: [String]) -> String { "[" + f.map(jsonString).joined(separator: ", ") + "]" }
        func counts(_ c: TraceComparison.CountChange) -> String {
            "{\"a\": \(c.a), \"b\": \(c.b), \"norm_a\": \(num(c.normA)), \"norm_b\": \(num(c.normB)), "
                + "\"ratio\": \(num(c.ratio)), \"change\": \(num(c.change)), \"change_low\": \(num(c.low)), "
                + "\"change_high\": \(num(c.high)), \"flagged\": \(c.flagged)}"
        }
        /// A quantile object; with one side only, just its value ("a" or "b") and nulls.
        func quantile(_ t: TraceComparison.Tested?, _ a: Double?, _ b: Double?) -> String {
            guard let t else {
                if a == nil && b == nil { return "null" }
                return "{\"a\": \(num(a)), \"b\": \(num(b)), \"delta\": null, \"change\": null, \"delta_low\": null, "
                    + "\"delta_high\": null, \"change_low\": null, \"change_high\": null, \"flagged\": false}"
            }
            let d = t.delta
            return "{\"a\": \(num(d.a)), \"b\": \(num(d.b)), \"delta\": \(num(d.delta)), \"change\": \(num(d.change)), "
                + "\"delta_low\": \(num(d.low)), \"delta_high\": \(num(d.high)), "
                + "\"change_low\": \(num(d.lowChange)), \"change_high\": \(num(d.highChange)), \"flagged\": \(t.flagged)}"
        }
        func reason(_ r: ExitReason) -> String {
            "\"reason\": \(jsonString(r.name)), \"reason_source\": \"\(r.source)\", \"reason_code\": \(r.code), "
        }
        func time(_ r: TraceComparison.Row) -> String {
            "{\"a\": \(r.timeA), \"b\": \(r.timeB), \"norm_a\": \(num(r.normTimeA)), \"norm_b\": \(num(r.normTimeB)), "
                + "\"change\": \(num(r.timeChange))}"
        }
        let levels = comparison.levels.map { r in
            "{\"level\": \(r.level), \"exits\": \(counts(r.count)), \"time_ns\": \(time(r)), \"flagged\": \(r.count.flagged)}"
        }
        let rows = comparison.rows.map { r in
            "{\"level\": \(r.level), " + (r.reason.map(reason) ?? "")
                + "\"handler\": \(jsonString(r.handler?.name ?? "")), \"count\": \(counts(r.count)), \"time_ns\": \(time(r)), "
                + "\"p50_ns\": \(quantile(r.p50, r.p50A, r.p50B)), \"p99_ns\": \(quantile(r.p99, r.p99A, r.p99B)), "
                + "\"enough_samples\": \(r.enoughSamples), \"flags\": \(flags(r.flags)), \"flagged\": \(r.flagged)}"
        }
        let episodes = comparison.episodes.map { e in
            "{\"level\": \(e.level), " + reason(e.reason) + "\"episodes\": \(counts(e.episodes)), "
                + "\"exits_mean_a\": \(num(e.meanMultiplicationA)), \"exits_mean_b\": \(num(e.meanMultiplicationB)), "
                + "\"exits_p50\": \(quantile(e.multiplicationP50, e.multiplicationA?.p50, e.multiplicationB?.p50)), "
                + "\"exits_p99\": \(quantile(e.multiplicationP99, e.multiplicationA?.p99, e.multiplicationB?.p99)), "
                + "\"time_p50_ns\": \(quantile(e.timeP50, e.timeA?.p50, e.timeB?.p50)), "
                + "\"time_p99_ns\": \(quantile(e.timeP99, e.timeA?.p99, e.timeB?.p99)), "
                + "\"enough_samples\": \(e.enoughSamples), \"flags\": \(flags(e.flags)), \"flagged\": \(e.flagged)}"
        }
        let s = settings, bs = s.bootstrap
        return """
            {
              "a": \(jsonString(a.path)),
              "b": \(jsonString(b.path)),
              "runs_a": \(jsonList(runsA.map { jsonString($0.path) })),
              "runs_b": \(jsonList(runsB.map { jsonString($0.path) })),\(selectionJSON(a))
              "per": \(per.map(jsonString) ?? "null"),
              "units_a": \(num(comparison.unitsA)),
              "units_b": \(num(comparison.unitsB)),
              "without_iterations": \(jsonList(withoutIterations.map(jsonString))),
              "settings": {"threshold": \(fixed(s.threshold, 6)), "run_noise": \(fixed(s.runNoise, 6)), "min_count": \(s.minCount), "confidence": \(fixed(bs.confidence, 6)), "blocks": \(bs.blocks), "resamples": \(bs.resamples), "seed": \(bs.seed)},
              "tests": \(comparison.tests),
              "per_test_confidence": \(fixed(comparison.perTestConfidence, 6)),
              "levels": \(jsonList(levels)),
              "rows": \(jsonList(rows)),
              "episodes": \(jsonList(episodes)),
              "flagged_rows": \(comparison.flagged.count),
              "flagged_episodes": \(comparison.flaggedEpisodes.count)
            }

            """
    }
}
