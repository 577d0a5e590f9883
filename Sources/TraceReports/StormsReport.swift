import TraceFormat

/// Renders an EpisodeAnalysis as tables or as JSON with a fixed key order.
public struct StormsReport {
    public init(reader: TraceReader, analysis: EpisodeAnalysis, top: Int, threshold: BurstThreshold) {
        self.reader = reader; self.analysis = analysis; self.top = top; self.threshold = threshold
    }

    let reader: TraceReader
    let analysis: EpisodeAnalysis
    let top: Int
    let threshold: BurstThreshold

    private func millis(_ ns: UInt64) -> String { fixed(Double(ns) / 1e6, 3) }
    private func percent(_ a: UInt64, _ b: UInt64) -> String { b == 0 ? "0.00" : fixed(Double(a) * 100 / Double(b), 2) }

    /// Non-empty buckets of the multiplication histogram: (lowest, highest, episodes).
    private var distribution: [(lo: UInt64, hi: UInt64, count: UInt64)] {
        analysis.multiplication.buckets.enumerated().compactMap { i, n in
            guard n > 0 else { return nil }
            let lo = i < 32 ? UInt64(i) : DurationBuckets.upperBound(i - 1) + 1
            return (lo, DurationBuckets.upperBound(i), n)
        }
    }

    private var thresholdText: String {
        switch threshold {
        case .rate: "\(fixed(analysis.bursts.threshold, 1)) exits/s"
        case .meanMultiple(let m): "\(fixed(m, 2))x the mean rate = \(fixed(analysis.bursts.threshold, 1)) exits/s"
        }
    }

    public func text() -> String {
        let a = analysis
        var out = "trace: \(reader.path)\n"
        if let command = reader.metadata["command"] { out += "command: \(printable(command))\n" }
        if let selection = reader.selection {
            out += "selection: \(printable(selection)) (\(reader.recordCount) of \(reader.unfilteredRecordCount) records)\n"
        }
        out += "records: \(reader.recordCount), exits: \(a.totalExits)\n"
        if (a.episodeCount == 0) {
            out += "episodes: 0 (no reflected L2 exits with an episode id: nothing was reflected to an L1 hypervisor)\n"
        } else {
            let m = a.multiplication, t = a.time
            out += "episodes: \(a.episodeCount)\n"
            out += "exits in episodes: \(a.exitsInEpisodes) (\(percent(a.exitsInEpisodes, a.totalExits))% of all exits)\n"
            out += "exit multiplication (L0 exits per episode): mean \(fixed(m.mean, 2)), p50 \(m.percentile(0.5)), "
                + "p90 \(m.percentile(0.9)), p99 \(m.percentile(0.99)), max \(m.max)\n"
            out += "episode time: mean \(durationCell(t.mean)), p50 \(durationCell(t.percentile(0.5))), "
                + "p90 \(durationCell(t.percentile(0.9))), p99 \(durationCell(t.percentile(0.99))), "
                + "max \(durationCell(UInt64(t.max)))\n"
        }
        if !(a.episodeCount == 0) {
            out += "\nper root reason (exits per episode, episode time):\n"
            var roots = Table(header: ["level", "root", "episodes", "share%", "exits mean", "p50", "p90", "p99", "max",
                                       "time mean", "p50", "p99", "max"], leftColumns: 2)
            for r in a.roots() {
                let m = r.multiplication, t = r.time
                roots.add(["L\(r.level)", r.reason.name, "\(r.episodes)", percent(UInt64(r.episodes), UInt64(a.episodeCount)),
                           fixed(m.mean, 2), "\(m.percentile(0.5))", "\(m.percentile(0.9))", "\(m.percentile(0.99))", "\(m.max)",
                           durationCell(t.mean), durationCell(t.percentile(0.5)), durationCell(t.percentile(0.99)),
                           durationCell(UInt64(t.max))])
            }
            out += roots.text
        }
        if a.orphanEpisodes > 0 {
            out += "orphan episode ids (records with an id but no reflected L2 exit): \(a.orphanEpisodes) (\(a.orphanRecords) records)\n"
        }
        if a.reflectedWithoutEpisode > 0 {
            out += "reflected L2 exits without an episode id: \(a.reflectedWithoutEpisode)\n"
        }
        if a.lateRecords > 0 {
            out += "records of episodes closed before them, left out: \(a.lateRecords) "
                + "(at most \(EpisodeAnalysis.openLimit) episodes stay open; see Traces/README.md)\n"
        }
        if !(a.episodeCount == 0) {
            out += "\nexits per episode:\n"
            var table = Table(header: ["exits", "episodes", "share%", ""], leftColumns: 0, leftLast: true)
            let most = distribution.map(\.count).max() ?? 1
            for d in distribution {
                let bar = String(repeating: "#", count: max(1, Int((Double(d.count) * 40 / Double(most)).rounded())))
                table.add([d.lo == d.hi ? "\(d.lo)" : "\(d.lo)-\(d.hi)", "\(d.count)",
                           percent(d.count, UInt64(a.episodeCount)), bar])
            }
            out += table.text

            out += "\nworst episodes (most exits):\n"
            var worst = Table(header: ["episode", "vcpu", "start ms", "exits", "time", "sequence"], leftColumns: 0, leftLast: true)
            for e in a.worst(top) {
                let seq = EpisodeAnalysis.ExitSequence(steps: EpisodeAnalysis.steps(of: e, in: reader), episodes: 1,
                                                       exits: Int(e.exits))
                worst.add(["\(e.id)", "\(e.vcpu)", millis(e.start), "\(e.exits)", durationCell(e.time), seq.text])
            }
            out += worst.text

            out += "\nmost common sequences:\n"
            var seqs = Table(header: ["episodes", "share%", "exits", "sequence"], leftColumns: 0, leftLast: true)
            for s in a.sequences {
                seqs.add(["\(s.episodes)", percent(UInt64(s.episodes), UInt64(a.episodeCount)), "\(s.exits)", s.text])
            }
            out += seqs.text
        }
        let b = a.bursts
        out += "\nbursts (window \(durationText(b.window)), threshold \(thresholdText)):\n"
        out += "windows: \(b.windowCount), hot: \(b.hotWindows), bursts: \(b.bursts.count), "
            + "exits in bursts: \(b.exitsInBursts) (\(percent(b.exitsInBursts, a.totalExits))%), "
            + "peak \(fixed(b.peakRate, 1)) exits/s\n"
        if b.beyondHorizon > 0 { out += "exits beyond \(BurstDetector.maxWindows) windows, not windowed: \(b.beyondHorizon)\n" }
        if !b.bursts.isEmpty {
            var table = Table(header: ["start ms", "end ms", "windows", "exits", "exits/s", "peak exits/s"], leftColumns: 0)
            for burst in largestBursts {
                table.add([millis(burst.start), millis(burst.end), "\(burst.windows)", "\(burst.exits)",
                           fixed(burst.rate, 1), fixed(burst.peakRate, 1)])
            }
            out += table.text
        }
        return out
    }

    /// The `top` bursts with the most exits, in time order.
    private var largestBursts: [BurstDetector.Burst] {
        analysis.bursts.bursts.enumerated()
            .sorted { ($0.element.exits, $1.offset) > ($1.element.exits, $0.offset) }
            .prefix(top).sorted { $0.offset < $1.offset }.map(\.element)
    }

    public func json() -> String {
        let a = analysis, m = a.multiplication, t = a.time, b = a.bursts
        func episode(_ e: EpisodeAnalysis.Episode) -> String {
            let seq = EpisodeAnalysis.ExitSequence(steps: EpisodeAnalysis.steps(of: e, in: reader), episodes: 1, exits: Int(e.exits))
            return "{\"episode\": \(e.id), \"vcpu\": \(e.vcpu), \"level\": \(e.rootLevel), "
                + "\"reason\": \(jsonString(e.rootReason.name)), \"start_ns\": \(e.start), \"exits\": \(e.exits), "
                + "\"records\": \(e.records), \"time_ns\": \(e.time), \"sequence\": \(jsonString(seq.text(maxSteps: 1000)))}"
        }
        let dist = distribution.map { "{\"min_exits\": \($0.lo), \"max_exits\": \($0.hi), \"episodes\": \($0.count)}" }
        let roots = a.roots().map { r in
            let m = r.multiplication, t = r.time
            return "{\"level\": \(r.level), \"reason\": \(jsonString(r.reason.name)), \"reason_source\": \"\(r.reason.source)\", "
                + "\"reason_code\": \(r.reason.code), \"episodes\": \(r.episodes), \"exits\": \(r.exits), "
                + "\"multiplication\": {\"mean\": \(fixed(m.mean, 3)), \"p50\": \(m.percentile(0.5)), \"p90\": \(m.percentile(0.9)), "
                + "\"p99\": \(m.percentile(0.99)), \"max\": \(m.max)}, "
                + "\"episode_time_ns\": {\"mean\": \(fixed(t.mean, 1)), \"p50\": \(t.percentile(0.5)), \"p90\": \(t.percentile(0.9)), "
                + "\"p99\": \(t.percentile(0.99)), \"max\": \(t.max)}}"
        }
        let seqs = a.sequences.map {
            "{\"sequence\": \(jsonString($0.text(maxSteps: 1000))), \"episodes\": \($0.episodes), \"exits\": \($0.exits)}"
        }
        let bursts = largestBursts.map {
            "{\"start_ns\": \($0.start), \"end_ns\": \($0.end), \"windows\": \($0.windows), \"exits\": \($0.exits), "
                + "\"exits_per_second\": \(fixed($0.rate, 3)), \"peak_exits_per_second\": \(fixed($0.peakRate, 3))}"
        }
        return """
            {
              "file": \(jsonString(reader.path)),\(selectionJSON(reader))
              "records": \(reader.recordCount),
              "exits": \(a.totalExits),
              "episodes": \(a.episodeCount),
              "exits_in_episodes": \(a.exitsInEpisodes),
              "orphan_episodes": \(a.orphanEpisodes),
              "orphan_records": \(a.orphanRecords),
              "reflected_without_episode": \(a.reflectedWithoutEpisode),
              "late_records": \(a.lateRecords),
              "multiplication": {"mean": \(fixed(m.mean, 3)), "p50": \(m.percentile(0.5)), "p90": \(m.percentile(0.9)), "p99": \(m.percentile(0.99)), "max": \(m.max)},
              "episode_time_ns": {"mean": \(fixed(t.mean, 1)), "p50": \(t.percentile(0.5)), "p90": \(t.percentile(0.9)), "p99": \(t.percentile(0.99)), "max": \(t.max)},
              "roots": \(jsonList(roots)),
              "distribution": \(jsonList(dist)),
              "worst": \(jsonList(a.worst(top).map(episode))),
              "sequences": \(jsonList(seqs)),
              "bursts": {
                "window_ns": \(b.window),
                "threshold_exits_per_second": \(fixed(b.threshold, 3)),
                "windows": \(b.windowCount),
                "hot_windows": \(b.hotWindows),
                "count": \(b.bursts.count),
                "exits_in_bursts": \(b.exitsInBursts),
                "peak_exits_per_second": \(fixed(b.peakRate, 3)),
                "beyond_horizon": \(b.beyondHorizon),
                "largest": \(jsonList(bursts, indent: "    "))
              }
            }

            """
    }
}
