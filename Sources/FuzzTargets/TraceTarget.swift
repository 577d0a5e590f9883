import TraceFormat
import TraceReports

/// `FuzzTarget.trace`. Input: a trace file's bytes.
enum TraceTarget {
    static func run(_ data: [UInt8]) {
        let reader: TraceReader
        do {
            reader = try TraceReader(bytes: data, name: "fuzz.trc")
        } catch {
            return   // a TraceError: the reader refused the file with a reason
        }
        invariant(reader.headerSize + reader.recordCount * 64 <= reader.fileSize, "\(reader.recordCount) records do not fit")
        var count = 0
        reader.forEach { _ in count += 1 }
        invariant(count == reader.recordCount, "forEach saw \(count) of \(reader.recordCount) records")

        let summary = TraceSummary(reader)
        invariant(summary.recordCount == reader.recordCount, "summary counted \(summary.recordCount)")
        _ = SummaryReport(reader: reader, summary: summary).text()
        _ = SummaryReport(reader: reader, summary: summary).json()

        let threshold = BurstThreshold.meanMultiple(3)
        let storms = EpisodeAnalysis(reader, threshold: threshold)
        _ = StormsReport(reader: reader, analysis: storms, top: 5, threshold: threshold).text()
        _ = StormsReport(reader: reader, analysis: storms, top: 5, threshold: threshold).json()

        let comparison = TraceComparison(summary, summary)
        _ = CompareReport(a: reader, b: reader, comparison: comparison, per: nil).text()
        // The statistical path: blocks, the bootstrap, episode roots and two runs per side.
        let settings = TraceComparison.Settings(bootstrap: Bootstrap(resamples: 10, blocks: 3))
        let blocked = TraceSummary(reader, blocks: 3)
        invariant(blocked.groups == summary.groups, "blocks changed the summary")
        let roots = storms.roots(blocks: 3)
        let twice = TraceSummary.merging([blocked, blocked], blocksPerRun: 3)
        let statistical = TraceComparison(blocked, twice, rootsA: roots,
                                          rootsB: EpisodeAnalysis.mergingRoots([roots, roots], blocksPerRun: 3),
                                          settings: settings)
        _ = CompareReport(a: [reader], b: [reader, reader], comparison: statistical, per: nil).json()
        _ = SummaryReport(reader: reader, summary: summary, addresses: AddressBreakdown(reader), top: 3, order: .p99).text()

        // A selection: every record of level 1 and 2 within the first half of the time span.
        var filter = RecordFilter()
        filter.levels = [1, 2]
        filter.to = (summary.firstTimestamp ?? 0) / 2 + (summary.lastTimestamp ?? 0) / 2
        if let selected = try? TraceReader(filtering: reader, by: filter, description: "fuzz") {
            invariant(selected.recordCount <= reader.recordCount, "the selection grew")
            _ = SummaryReport(reader: selected, summary: TraceSummary(selected)).json()
        }

        for bins in [1, 7] {
            _ = PlotRenderer(reader: reader, timeline: Timeline(reader, bins: bins), series: 3).render()
        }
        guard let sink = try? TextOutput(path: "/dev/null") else { return }
        PerfettoExport.write(reader, to: sink)
        // Plain packets: compressing hands buffers to other threads, whose late frees would make
        // libFuzzer suspect a leak on every input (and LeakSanitizer scan each time).
        PerfettoProtoExport.write(reader, to: sink, compressed: false)
        RecordExport.writeCSV(reader, to: sink)
        RecordExport.writeJSONLines(reader, to: sink)
        try? sink.finish()
    }
}
