import ArgumentParser
import TraceFormat
import TraceReports

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw an SVG: the exit rate over time per level and reason, and a handling-time histogram."
    )

    @Argument(help: "The trace file (.trc).")
    var trace: String

    @Option(help: "The SVG file to write ('-' for standard output).")
    var out: String

    @Option(help: "Time bins in the timeline.")
    var bins = 120

    @Option(help: "Level/reason series drawn before the rest are summed as 'other'.")
    var series = 8

    @OptionGroup var filter: FilterOptions

    func validate() throws {
        try filter.validate()
        guard (1...10_000).contains(bins) else { throw ValidationError("--bins must be 1...10000") }
        guard (1...10).contains(series) else { throw ValidationError("--series must be 1...10") }
    }

    func run() throws {
        if out != "-", let input = FileIdentity.clash(output: out, inputs: [trace]) {
            throw fail("\(out): is the input \(input); refusing to overwrite it")
        }
        let reader = try filter.apply(to: try openTrace(trace))
        let svg = PlotRenderer(reader: reader, timeline: Timeline(reader, bins: bins), series: series).render()
        do {
            let output = out == "-" ? TextOutput() : try TextOutput(path: out, inputs: [trace])
            output.write(svg)
            try output.finish()
        } catch {
            throw fail("\(error)")
        }
    }
}
