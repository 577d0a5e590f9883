import ArgumentParser
import TraceFormat

@main
struct TerrapinTrace: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "terrapin-trace",
        abstract: "Analyse Terrapin exit traces",
        subcommands: [Summary.self]
    )
}

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print counts and handling-time statistics per level, exit kind and handler."
    )

    @Argument(help: "The trace file (.trc).")
    var trace: String

    @Flag(help: "Print a JSON object instead of a table.")
    var json = false

    func run() throws {
        let reader: TraceReader
        do {
            reader = try TraceReader(path: trace)
        } catch {
            printError("error: \(error)")
            throw ExitCode(1)
        }
        let summary = TraceSummary(reader)
        let report = SummaryReport(reader: reader, summary: summary)
        writeStdout(json ? report.json() : report.text())
    }
}
