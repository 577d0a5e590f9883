import ArgumentParser
import TraceFormat
import TraceReports

struct Storms: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exit multiplication: episodes of reflected L2 exits, their sequences, and bursts of exits.",
        discussion: """
            An episode is a reflected L2 exit and every record with its episode id; its \
            multiplication is the number of L0 exits it caused, the L2 exit included. \
            A burst is a run of consecutive windows (aligned to the run start) whose exit \
            rate is above the threshold. See Traces/README.md.
            """
    )

    @Argument(help: "The trace file (.trc).")
    var trace: String

    @Option(help: "Burst window: a duration such as 1ms, 250us, 2s or a number of ns.")
    var window = "1ms"

    @Option(help: "Burst threshold: exits/s (50000, 50k, 2M) or a multiple of the mean rate (3x).")
    var threshold = "3x"

    @Option(help: "How many episodes, sequences and bursts to list.")
    var top = 10

    @Flag(help: "Print a JSON object instead of tables.")
    var json = false

    @OptionGroup var filter: FilterOptions

    func validate() throws {
        guard parseDuration(window) != nil else {
            throw ValidationError("--window '\(window)' is not a duration (e.g. 1ms, 250us, 5000)")
        }
        guard BurstThreshold(threshold) != nil else {
            throw ValidationError("--threshold '\(threshold)' is not a rate (e.g. 50000, 50k, 3x)")
        }
        guard top >= 0 else { throw ValidationError("--top must not be negative") }
        try filter.validate()
    }

    func run() throws {
        let reader = try filter.apply(to: try openTrace(trace))
        let analysis = EpisodeAnalysis(reader, window: parseDuration(window)!, threshold: BurstThreshold(threshold)!,
                                       topSequences: top, worst: top, keepEpisodes: false)
        let report = StormsReport(reader: reader, analysis: analysis, top: top, threshold: BurstThreshold(threshold)!)
        writeStdout(json ? report.json() : report.text())
    }
}
