import ArgumentParser
import TraceFormat

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the records as a Perfetto trace (protobuf or Chrome Trace Event JSON), CSV or JSON Lines.",
        discussion: """
            perfetto: Perfetto's native protobuf trace (.pftrace), one track per level (and \
            vCPU), exits as slices with debug annotations, episodes as slices enclosing their \
            exits, in zlib-compressed packets unless --uncompressed; loads in ui.perfetto.dev. perfetto-json: the same as {"traceEvents": [...]}. \
            csv: a header and one row per record. json: JSON Lines, one object per record. \
            See Traces/README.md.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case perfetto, perfettoJSON = "perfetto-json", csv, json
    }

    @Argument(help: "The trace file (.trc).")
    var trace: String

    @Option(help: "Output format: perfetto (protobuf), perfetto-json, csv or json.")
    var format: Format

    @Flag(help: "perfetto: exits and episodes without debug annotations (smaller files, the same slices).")
    var noAnnotations = false

    @Flag(help: "perfetto: plain packets instead of zlib-compressed ones (Perfetto's compressed_packets); about 3.5x larger.")
    var uncompressed = false

    @Option(help: "Output file (default, or '-': standard output).")
    var out: String?

    @Flag(help: "csv and json: rip, address, value and flags as decimal numbers, and in csv -1 for no VMX reason, so every column but kind, reason and handler is an integer.")
    var numeric = false

    @OptionGroup var filter: FilterOptions

    func validate() throws {
        if numeric && (format == .perfetto || format == .perfettoJSON) {
            throw ValidationError("--numeric applies to --format csv and json only")
        }
        if noAnnotations && format != .perfetto {
            throw ValidationError("--no-annotations applies to --format perfetto only")
        }
        if uncompressed && format != .perfetto {
            throw ValidationError("--uncompressed applies to --format perfetto only")
        }
        try filter.validate()
    }

    func run() throws {
        let reader = try filter.apply(to: try openTrace(trace))
        let output: TextOutput
        do {
            output = try out.flatMap { $0 == "-" ? nil : try TextOutput(path: $0, inputs: [trace]) } ?? TextOutput()
        } catch {
            throw fail("\(error)")
        }
        switch format {
        case .perfetto:
            PerfettoProtoExport.write(reader, to: output, annotations: !noAnnotations, compressed: !uncompressed)
        case .perfettoJSON: PerfettoExport.write(reader, to: output)
        case .csv: RecordExport.writeCSV(reader, to: output, numeric: numeric)
        case .json: RecordExport.writeJSONLines(reader, to: output, numeric: numeric)
        }
        do { try output.finish() } catch { throw fail("\(error)") }
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a synthetic nested trace (for tests and benchmarks).",
        shouldDisplay: false
    )

    enum ProfileOption: String, ExpressibleByArgument, CaseIterable {
        case baseline, shadow
    }

    @Option(help: "Number of records.")
    var records = 10_000

    @Option(help: "Random seed.")
    var seed: UInt64 = 1

    @Option(help: "baseline, or shadow (shadow VMCS: fewer VMREAD/VMWRITE exits).")
    var profile: ProfileOption = .baseline

    @Option(help: "The trace file to write.")
    var out: String

    func validate() throws {
        guard records >= 0 else { throw ValidationError("--records must not be negative") }
    }

    func run() throws {
        let generator = SyntheticTrace(records: records, seed: seed,
                                       profile: SyntheticTrace.Profile(rawValue: profile.rawValue)!)
        do { try generator.write(to: out) } catch { throw fail("\(error)") }
    }
}
