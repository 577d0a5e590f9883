import ArgumentParser
import TraceFormat
import TraceReports

@main
struct TerrapinTrace: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "terrapin-trace",
        abstract: "Analyse Terrapin exit traces",
        version: TerrapinTrace.version,
        subcommands: [Summary.self, Storms.self, Compare.self, Plot.self, Export.self, Align.self, Generate.self]
    )

    /// The tool's version and the trace format version it reads.
    static let version = "terrapin-trace 1.1 (trace format version \(TraceLayout.version))"
}

extension SummaryReport.Order: ExpressibleByArgument {}

/// Opens a trace, or prints "error: FILE: byte N: ..." and exits with status 1.
func openTrace(_ path: String) throws -> TraceReader {
    do {
        return try TraceReader(path: path)
    } catch {
        printError("error: \(error)")
        throw ExitCode(1)
    }
}

/// Prints "error: ..." and exits with status 1.
func fail(_ message: String) -> ExitCode {
    printError("error: \(message)")
    return ExitCode(1)
}

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print counts and handling-time statistics per level, exit reason and handler."
    )

    @Argument(help: "The trace file (.trc).")
    var trace: String

    @Flag(help: "Print a JSON object instead of a table.")
    var json = false

    @Flag(help: "Add a breakdown per I/O port, guest-physical address and MSR index (as perf kvm stat --event=ioport|mmio).")
    var byAddress = false

    @Option(help: "Address rows to list with --by-address (0: all).")
    var top = 20

    @Option(help: ArgumentHelp("Order of the rows: reason (level, reason, handler), or largest first by count, total, mean, p50, p99 or max.",
                               valueName: "order"))
    var sort: SummaryReport.Order = .reason

    @OptionGroup var filter: FilterOptions

    func validate() throws {
        guard top >= 0 else { throw ValidationError("--top must not be negative") }
        try filter.validate()
    }

    func run() throws {
        let reader = try filter.apply(to: try openTrace(trace))
        let summary = TraceSummary(reader)
        let report = SummaryReport(reader: reader, summary: summary, addresses: byAddress ? AddressBreakdown(reader) : nil,
                                   top: top, order: sort)
        writeStdout(json ? report.json() : report.text())
    }
}
