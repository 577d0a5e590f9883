import ArgumentParser
import TraceFormat
import TraceReports

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put two traces side by side: counts and handling-time distributions per level, reason and episode root.",
        discussion: """
            Counts are normalised by a unit of work from each trace's metadata: the key \
            given by --per (default: iterations, the loop count the storm guests report \
            through the work-report port, when every trace has it; otherwise no \
            normalisation, and the output names the traces without it). The unit count is the last number in the key's value, so \
            --per cmdline works for `pio-storm.elf 2000`. --per none turns it off. \
            Handling times are compared by their p50 and p99, with block-bootstrap \
            intervals; counts with a Poisson interval. A change is flagged ('*') only when \
            its interval excludes no change and it is beyond --threshold percent; rows with \
            fewer than --min-count exits on a side are shown and not tested. Nested traces \
            also get one row per episode root: episodes, exits per episode and episode time. \
            Runs of one workload differ by more than a run varies inside (often 10-40% in \
            handling time on a shared machine): give each side several runs (--a-run, \
            --b-run) and the bootstrap draws runs first, so its intervals cover that too. \
            With one run on a side, a time change is flagged only when its whole interval \
            lies beyond --run-noise percent. \
            With several runs, counts are per run unless --per is given. See Traces/README.md.
            """
    )

    @Argument(help: "The baseline trace (A).")
    var a: String

    @Argument(help: "The trace to compare with it (B).")
    var b: String

    @Option(name: .customLong("a-run"), help: ArgumentHelp("Another run of A (repeat for more runs).", valueName: "trace"))
    var moreA: [String] = []

    @Option(name: .customLong("b-run"), help: ArgumentHelp("Another run of B (repeat for more runs).", valueName: "trace"))
    var moreB: [String] = []

    @Option(help: "Metadata key holding the unit of work (or 'none').")
    var per: String?

    // .unconditional, so that "--threshold -5" reaches validate() and gets
    // a clear message instead of "Missing value".
    @Option(parsing: .unconditional, help: "Flag changes beyond this many percent (>= 0).")
    var threshold = 10.0

    @Option(parsing: .unconditional,
            help: "With one run on a side: how much runs differ in time, in percent; a time change is flagged only when its interval lies beyond it.")
    var runNoise = 20.0

    @Option(help: "Fewest exits (or episodes) per side for a row to be tested.")
    var minCount = 50

    @Option(help: "Confidence level of the intervals, in percent (50-99.9).")
    var confidence = 95.0

    @Option(help: "Bootstrap resamples.")
    var resamples = 1000

    @Option(help: "Blocks each trace is cut into for the bootstrap (2-1000).")
    var blocks = 20

    @Option(help: "Seed of the bootstrap's random generator.")
    var seed: UInt64 = 1

    @Flag(help: "Print a JSON object instead of tables.")
    var json = false

    @OptionGroup var filter: FilterOptions

    func validate() throws {
        guard threshold >= 0, threshold.isFinite else {
            throw ValidationError("--threshold must be a percentage >= 0 (got \(threshold)); changes in both directions are flagged")
        }
        guard runNoise >= 0, runNoise.isFinite else { throw ValidationError("--run-noise must be a percentage >= 0") }
        guard minCount >= 1 else { throw ValidationError("--min-count must be at least 1") }
        guard (50...99.9).contains(confidence) else { throw ValidationError("--confidence must be 50...99.9 (percent)") }
        guard (1...100_000).contains(resamples) else { throw ValidationError("--resamples must be 1...100000") }
        guard (2...1000).contains(blocks) else { throw ValidationError("--blocks must be 2...1000") }
        try filter.validate()
    }

    func run() throws {
        let readersA = try ([a] + moreA).map { try filter.apply(to: try openTrace($0)) }
        let readersB = try ([b] + moreB).map { try filter.apply(to: try openTrace($0)) }
        var key: String? = nil
        var units: (Double, Double)? = nil
        var missing: [String] = []
        func total(_ readers: [TraceReader], _ k: String, required: Bool) throws -> Double? {
            var sum = 0.0
            for r in readers {
                guard let u = TraceComparison.workUnits(r.metadata, key: k) else {
                    if required { throw fail("\(r.path): metadata has no number under '\(k)' (for --per)") }
                    return nil
                }
                sum += u
            }
            return sum
        }
        switch per {
        case "none"?: break
        case let k?:
            units = (try total(readersA, k, required: true)!, try total(readersB, k, required: true)!)
            key = k
        case nil:
            // The default: the unit of work the guests reported (Traces/README.md).
            let k = TraceMetadata.iterationsKey
            missing = (readersA + readersB).filter { TraceComparison.workUnits($0.metadata, key: k) == nil }.map(\.path)
            if missing.isEmpty {
                key = k
                units = (try total(readersA, k, required: true)!, try total(readersB, k, required: true)!)
            } else if readersA.count > 1 || readersB.count > 1 {
                key = "run"
                units = (Double(readersA.count), Double(readersB.count))
            }
        }
        let settings = TraceComparison.Settings(
            threshold: threshold / 100, minCount: UInt64(minCount),
            bootstrap: Bootstrap(resamples: resamples, seed: seed, confidence: confidence / 100, blocks: blocks),
            runNoise: readersA.count > 1 && readersB.count > 1 ? 0 : runNoise / 100)
        // The episode pass only for traces that have reflected exits.
        func side(_ readers: [TraceReader]) -> (TraceSummary, [EpisodeAnalysis.RootStats]) {
            var summaries: [TraceSummary] = [], roots: [[EpisodeAnalysis.RootStats]] = []
            for r in readers {
                let s = TraceSummary(r, blocks: blocks)
                summaries.append(s)
                let nested = s.groups.contains { $0.handler == .reflected && $0.level >= 2 }
                roots.append(nested ? EpisodeAnalysis(r, topSequences: 0, worst: 0, blocks: blocks, keepEpisodes: false).roots() : [])
            }
            return (TraceSummary.merging(summaries, blocksPerRun: blocks),
                    EpisodeAnalysis.mergingRoots(roots, blocksPerRun: blocks))
        }
        let (sa, rootsA) = side(readersA), (sb, rootsB) = side(readersB)
        let comparison = TraceComparison(sa, sb, rootsA: rootsA, rootsB: rootsB,
                                         unitsA: units?.0, unitsB: units?.1, settings: settings)
        var report = CompareReport(a: readersA, b: readersB, comparison: comparison, per: key)
        report.withoutIterations = missing
        writeStdout(json ? report.json() : report.text())
    }
}
