import ArgumentParser
import TraceFormat
import TraceReports

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put two traces side by side: counts and time per level and reason, ratios and changes.",
        discussion: """
            Values are normalised by a unit of work from each trace's metadata: the key \
            given by --per (default: iterations, when both traces have it; otherwise no \
            normalisation). The unit count is the last number in the key's value, so \
            --per cmdline works for `pio-storm.elf 2000`. --per none turns it off. \
            Rows whose count or time changes by more than --threshold percent, or that \
            exist in one trace only, are flagged with '*'.
            """
    )

    @Argument(help: "The baseline trace (A).")
    var a: String

    @Argument(help: "The trace to compare with it (B).")
    var b: String

    @Option(help: "Metadata key holding the unit of work (or 'none').")
    var per: String?

    @Option(help: "Flag changes above this many percent.")
    var threshold = 10.0

    @Flag(help: "Print a JSON object instead of tables.")
    var json = false

    func validate() throws {
        guard threshold >= 0, threshold.isFinite else { throw ValidationError("--threshold must be a percentage >= 0") }
    }

    func run() throws {
        let ra = try openTrace(a), rb = try openTrace(b)
        var key: String? = nil
        var units: (Double, Double)? = nil
        switch per {
        case "none"?: break
        case let k?:
            guard let ua = TraceComparison.workUnits(ra.metadata, key: k) else {
                throw fail("\(a): metadata has no number under '\(k)' (for --per)")
            }
            guard let ub = TraceComparison.workUnits(rb.metadata, key: k) else {
                throw fail("\(b): metadata has no number under '\(k)' (for --per)")
            }
            key = k
            units = (ua, ub)
        case nil:
            if let ua = TraceComparison.workUnits(ra.metadata, key: "iterations"),
               let ub = TraceComparison.workUnits(rb.metadata, key: "iterations") {
                key = "iterations"
                units = (ua, ub)
            }
        }
        let comparison = TraceComparison(TraceSummary(ra), TraceSummary(rb), unitsA: units?.0, unitsB: units?.1,
                                         threshold: threshold / 100)
        let report = CompareReport(a: ra, b: rb, comparison: comparison, per: key)
        writeStdout(json ? report.json() : report.text())
    }
}
