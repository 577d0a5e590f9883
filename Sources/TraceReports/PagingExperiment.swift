import TraceFormat

/// The paging-strategy experiment (`terrapin experiment paging`, docs/SHADOW.md):
/// MMU workloads as L2 under turtle's paging modes, each run timed by the
/// guest itself, summarised per row and mode with a median and a bootstrap
/// confidence interval over the runs, as text, JSON and an SVG chart.
public struct PagingExperiment: Sendable {
    /// The configurations, in table order: turtle's three paging modes
    /// (docs/SHADOW.md), and EPT-on-EPT twice more over turtle's scattered
    /// p2m (a fragmented EPT12 of 4 KiB leaves that L0 cannot coalesce),
    /// with L0's two EPT02 build policies (`terrapin run --ept02`).
    public static let modes = ["ept", "shadow", "identity", "ept-scatter", "ept-scatter-eager"]

    /// turtle's options for `mode`.
    public static func turtleOptions(_ mode: String) -> String {
        switch mode {
        case "ept-scatter", "ept-scatter-eager": return "paging=ept p2m=scatter"
        default: return "paging=\(mode)"
        }
    }

    /// `terrapin run` options for `mode`.
    public static func monitorOptions(_ mode: String) -> [String] { ["--ept02", mode == "ept-scatter-eager" ? "eager" : "lazy"] }

    /// A column's title.
    static func title(_ mode: String) -> String {
        switch mode {
        case "ept-scatter": return "ept, scattered, lazy EPT02"
        case "ept-scatter-eager": return "ept, scattered, eager EPT02"
        default: return mode
        }
    }

    /// One guest run per mode and round; it gives one or more rows.
    public struct Workload: Sendable, Equatable {
        public var guest: String
        public var arguments: String
        /// Operations the guest times: the divisor of the per-operation exit counts.
        public var operations: Int
        /// The rows it gives: name, and the figure's key (`figure(_:in:)`).
        public var rows: [(name: String, key: String)]

        public init(guest: String, arguments: String, operations: Int, rows: [(name: String, key: String)]) {
            self.guest = guest; self.arguments = arguments; self.operations = operations; self.rows = rows
        }

        public static func == (a: Workload, b: Workload) -> Bool {
            a.guest == b.guest && a.arguments == b.arguments && a.operations == b.operations
                && a.rows.map(\.name) == b.rows.map(\.name) && a.rows.map(\.key) == b.rows.map(\.key)
        }
    }

    /// The workloads; `fast` keeps every row with few operations, for CI.
    public static func workloads(fast: Bool) -> [Workload] {
        let pages = fast ? 8 : 256
        let many = fast ? 16 : 64                       // more spaces than turtle caches roots for (8)
        return [
            Workload(guest: "mm-storm", arguments: "\(pages)", operations: 3 * pages, rows: [
                ("mm-storm demand fault", "mm-demand"), ("mm-storm unmap+refault", "mm-unmap"),
                ("mm-storm remap (PTE write + INVLPG)", "mm-remap"),
            ]),
            Workload(guest: "ctx-storm", arguments: fast ? "2 3" : "2 50", operations: fast ? 6 : 100,
                     rows: [("ctx-storm, 2 spaces, per switch", "ctx")]),
            Workload(guest: "ctx-storm", arguments: fast ? "8 1" : "8 25", operations: fast ? 8 : 200,
                     rows: [("ctx-storm, 8 spaces, per switch", "ctx")]),
            Workload(guest: "ctx-storm", arguments: fast ? "\(many) 1" : "\(many) 2", operations: fast ? many : 2 * many,
                     rows: [("ctx-storm, \(many) spaces, per switch", "ctx")]),
            Workload(guest: "page-touch", arguments: fast ? "100" : "2000", operations: fast ? 100 : 2000,
                     rows: [("page-touch, per first touch", "page-touch")]),
            Workload(guest: "pio-storm", arguments: fast ? "100" : "2000", operations: fast ? 100 : 2000,
                     rows: [("pio-storm, per PIO exit", "pio")]),
            Workload(guest: "compute", arguments: "1", operations: 1, rows: [("compute, 1 round", "compute")]),
        ]
    }

    /// The figure `key` from a guest's output (its own RDTSC timing), in
    /// TSC cycles per operation; nil when the line is missing.
    public static func figure(_ key: String, in output: String) -> Double? {
        for line in output.split(separator: "\n").map(String.init) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
            func number(after marker: [String]) -> Double? {
                guard let i = (0..<words.count).first(where: { words[$0...].starts(with: marker) }),
                      i + marker.count < words.count else { return nil }
                return Double(words[i + marker.count])
            }
            func number(before marker: String) -> Double? {
                guard let i = words.firstIndex(of: marker), i > 0 else { return nil }
                return Double(words[i - 1])
            }
            switch key {
            case "mm-demand" where line.hasPrefix("mm-storm: demand fault"): return number(after: ["demand", "fault"])
            case "mm-unmap" where line.hasPrefix("mm-storm: demand fault"): return number(after: ["unmap+refault"])
            case "mm-remap" where line.hasPrefix("mm-storm: demand fault"): return number(after: ["remap"])
            case "ctx" where line.hasSuffix("per switch"): return number(before: "per")
            case "page-touch" where line.contains("first touch") && line.contains("per page"):
                return words.firstIndex(of: "page)").flatMap { i in i >= 2 ? Double(words[i - 2].filter { $0 != "(" }) : nil }
            case "pio" where line.hasSuffix("per exit"): return number(before: "per")
            case "compute" where line.contains("TSC cycles"): return number(before: "TSC")
            default: continue
            }
        }
        return nil
    }

    /// What one run measured.
    public struct Run: Sendable, Equatable {
        public var workload: Int
        public var mode: String
        public var round: Int
        public var status: Int32
        /// Per row of the workload, TSC cycles per operation.
        public var figures: [Double]
        public var trace: String
        /// L2's exits that reached L0, those L0 reflected to L1, and of
        /// those the #PF exits (shadow faults) and EPT violations; and the
        /// EPT02 faults (L2 exits L0 answered by building a slot).
        public var l2Exits: UInt64 = 0, reflected: UInt64 = 0, pageFaultExits: UInt64 = 0, eptViolations: UInt64 = 0
        public var ept02Faults: UInt64 = 0
        /// L0 exits per episode (a reflected exit and L1's handling of it), mean.
        public var multiplication: Double = 0

        public init(workload: Int, mode: String, round: Int, status: Int32, figures: [Double], trace: String) {
            self.workload = workload; self.mode = mode; self.round = round; self.status = status
            self.figures = figures; self.trace = trace
        }

        /// The trace's counts, from `reader`.
        public mutating func count(_ reader: TraceReader) {
            for r in reader where r.level == 2 {
                l2Exits += 1
                if r.flags.contains(.ept02Fault) { ept02Faults += 1 }
                guard r.handler == .reflected else { continue }
                reflected += 1
                if r.vmxReason == 0 && r.value == 14 { pageFaultExits += 1 }
                if r.vmxReason == 48 { eptViolations += 1 }
            }
            let episodes = EpisodeAnalysis(reader)
            multiplication = episodes.episodeCount == 0 ? 0
                : Double(episodes.exitsInEpisodes) / Double(episodes.episodeCount)
        }
    }

    public var rounds: Int
    public var fast: Bool
    public var workloads: [Workload]
    public var runs: [Run] = []

    public init(rounds: Int, fast: Bool) {
        self.rounds = rounds; self.fast = fast
        workloads = Self.workloads(fast: fast)
    }

    /// A median and a two-sided 95% interval of the median, from the trace
    /// tool's bootstrap (`Bootstrap`, 2000 resamples of the runs, a fixed
    /// seed: the same runs give the same interval).
    public typealias Estimate = Bootstrap.MedianEstimate
    static let bootstrap = Bootstrap(resamples: 2000, seed: 1, confidence: 0.95)

    public static func estimate(_ values: [Double]) -> Estimate? { bootstrap.median(of: values) }

    /// A row's `mode` over `base` (e.g. shadow over ept): the ratio of the
    /// medians with its bootstrap interval.
    public func ratio(_ row: Int, _ mode: String, over base: String) -> Estimate? {
        let (w, i) = rowIndex[row]
        func values(_ m: String) -> [Double] { runs.filter { $0.workload == w && $0.mode == m }.map { $0.figures[i] } }
        return Self.bootstrap.medianRatio(values(base), values(mode))
    }

    /// Per row: its workload and its index among the workload's rows.
    private var rowIndex: [(workload: Int, row: Int)] {
        workloads.enumerated().flatMap { w, workload in workload.rows.indices.map { (w, $0) } }
    }

    /// The rows: name, its workload, and per mode the estimate of its figure.
    public var rows: [(name: String, workload: Int, byMode: [String: Estimate])] {
        var out: [(String, Int, [String: Estimate])] = []
        for (w, workload) in workloads.enumerated() {
            for (i, row) in workload.rows.enumerated() {
                var byMode: [String: Estimate] = [:]
                for mode in Self.modes {
                    let values = runs.filter { $0.workload == w && $0.mode == mode }.map { $0.figures[i] }
                    byMode[mode] = Self.estimate(values)
                }
                out.append((row.name, w, byMode))
            }
        }
        return out
    }

    /// Per workload and mode, the mean of a per-operation trace count.
    func perOperation(_ w: Int, _ mode: String, _ count: (Run) -> Double) -> Double {
        let these = runs.filter { $0.workload == w && $0.mode == mode }
        guard !these.isEmpty else { return 0 }
        return these.map(count).reduce(0, +) / Double(these.count) / Double(max(workloads[w].operations, 1))
    }

    private static func cycles(_ v: Double) -> String { v >= 100 ? fixed(v, 0) : fixed(v, 1) }

    /// The ratios the tables show: numerator, denominator, title.
    static let ratios = [("shadow", "ept", "shadow / ept"), ("ept-scatter-eager", "ept-scatter", "eager / lazy, scattered")]

    private static func interval(_ e: Estimate, _ digits: (Double) -> String) -> String {
        "\(digits(e.median)) [\(digits(e.low)), \(digits(e.high))]"
    }

    private static func ratioText(_ v: Double) -> String { fixed(v, v >= 10 ? 0 : 2) }

    public func text() -> String {
        var out = "Paging strategies: TSC cycles per operation, median [95% interval over \(rounds) round\(rounds == 1 ? "" : "s")]\n"
        var table = Table(header: ["operation"] + Self.modes.map(Self.title) + Self.ratios.map(\.2), leftColumns: 1)
        for (r, row) in rows.enumerated() {
            var cells = [row.name]
            for mode in Self.modes {
                cells.append(row.byMode[mode].map { Self.interval($0, Self.cycles) } ?? "-")
            }
            for (a, b, _) in Self.ratios {
                cells.append(ratio(r, a, over: b).map { Self.interval($0, Self.ratioText) } ?? "-")
            }
            table.add(cells)
        }
        out += table.text
        out += "\nPer operation, from the traces (whole runs, boot included): L2 exits reaching L0 / reflected to turtle / #PF exits / EPT02 faults; L0 exits per episode\n"
        var counts = Table(header: ["workload"] + Self.modes.map(Self.title), leftColumns: 1)
        for (w, workload) in workloads.enumerated() {
            var cells = ["\(workload.guest) \(workload.arguments)"]
            for mode in Self.modes {
                let exits = perOperation(w, mode) { Double($0.l2Exits) }
                let reflected = perOperation(w, mode) { Double($0.reflected) }
                let faults = perOperation(w, mode) { Double($0.pageFaultExits) }
                let ept02 = perOperation(w, mode) { Double($0.ept02Faults) }
                let episodes = runs.filter { $0.workload == w && $0.mode == mode }.map(\.multiplication)
                let multiplication = episodes.isEmpty ? 0 : episodes.reduce(0, +) / Double(episodes.count)
                cells.append("\(fixed(exits, 2)) / \(fixed(reflected, 2)) / \(fixed(faults, 2)) / \(fixed(ept02, 2)); \(fixed(multiplication, 1))")
            }
            counts.add(cells)
        }
        out += counts.text
        return out
    }

    public func json() -> String {
        func estimate(_ e: Estimate?) -> String {
            guard let e else { return "null" }
            return "{\"median\": \(fixed(e.median, 1)), \"low\": \(fixed(e.low, 1)), \"high\": \(fixed(e.high, 1))}"
        }
        func ratio(_ e: Estimate?) -> String {
            guard let e else { return "null" }
            return "{\"ratio\": \(fixed(e.median, 4)), \"low\": \(fixed(e.low, 4)), \"high\": \(fixed(e.high, 4))}"
        }
        let rowJSON = rows.enumerated().map { r, row -> String in
            let modes = Self.modes.map { "\"\($0)\": \(estimate(row.byMode[$0]))" }.joined(separator: ", ")
            return "    {\"name\": \(jsonString(row.name)), \"workload\": \(row.workload), \"unit\": \"TSC cycles per operation\", "
                + "\"modes\": {\(modes)}, \"shadow_over_ept\": \(ratio(self.ratio(r, "shadow", over: "ept"))), "
                + "\"eager_over_lazy\": \(ratio(self.ratio(r, "ept-scatter-eager", over: "ept-scatter")))}"
        }
        let workloadJSON = workloads.map {
            "    {\"guest\": \(jsonString($0.guest)), \"arguments\": \(jsonString($0.arguments)), \"operations\": \($0.operations)}"
        }
        let runJSON = runs.map { r in
            "    {\"workload\": \(r.workload), \"mode\": \"\(r.mode)\", \"round\": \(r.round), \"status\": \(r.status), "
                + "\"figures\": [\(r.figures.map { fixed($0, 1) }.joined(separator: ", "))], \"trace\": \(jsonString(r.trace)), "
                + "\"l2_exits\": \(r.l2Exits), \"reflected\": \(r.reflected), \"page_fault_exits\": \(r.pageFaultExits), "
                + "\"ept_violations\": \(r.eptViolations), \"ept02_faults\": \(r.ept02Faults), \"multiplication\": \(fixed(r.multiplication, 3))}"
        }
        return """
            {
              "rounds": \(rounds),
              "fast": \(fast),
              "modes": [\(Self.modes.map { "\"\($0)\"" }.joined(separator: ", "))],
              "workloads": [
            \(workloadJSON.joined(separator: ",\n"))
              ],
              "rows": [
            \(rowJSON.joined(separator: ",\n"))
              ],
              "runs": [
            \(runJSON.joined(separator: ",\n"))
              ]
            }

            """
    }

    /// Per row, bars of shadow / ept and of eager / lazy EPT02 on a log
    /// scale, with the bootstrap interval of each ratio as a whisker.
    public func svg() -> String {
        let rows = self.rows
        let rowHeight = 34.0, left = 260.0, width = 900.0, top = 64.0
        let height = Int(top + Double(rows.count) * rowHeight + 50)
        var doc = SVG(width: Int(width), height: height)
        doc.text(10, 22, "TSC cycles per operation, ratio of medians (log scale; 1 = as fast)", size: 14)
        let colours = ["#c0504d", "#4f81bd"]
        for (k, (_, _, title)) in Self.ratios.enumerated() {
            doc.rect(10 + Double(k) * 160, 34, 12, 12, fill: colours[k], title: title)
            doc.text(26 + Double(k) * 160, 45, title, size: 12)
        }
        let estimates = rows.indices.map { r in Self.ratios.map { ratio(r, $0.0, over: $0.1) } }
        let highest = max(10, estimates.flatMap { $0.compactMap { $0?.high } }.max() ?? 10)
        let decades = max(1, Int(log10(highest).rounded(.up)))
        let plot = width - left - 30
        func x(_ ratio: Double) -> Double { left + plot * min(max(log10(max(ratio, 0.1)) + 1, 0), Double(decades + 1)) / Double(decades + 1) }
        for d in -1...decades {
            let at = x(pow10(d))
            doc.line(at, top - 8, at, top + Double(rows.count) * rowHeight, stroke: d == 0 ? "#000" : "#ccc")
            doc.text(at, top + Double(rows.count) * rowHeight + 16, d < 0 ? "0.1" : fixed(pow10(d), 0), size: 11, anchor: .middle)
        }
        let bar = (rowHeight - 8) / Double(Self.ratios.count)
        for (i, row) in rows.enumerated() {
            let y = top + Double(i) * rowHeight
            doc.text(left - 8, y + rowHeight / 2 + 4, row.name, size: 12, anchor: .end)
            for (k, e) in estimates[i].enumerated() {
                guard let e else { continue }
                let yk = y + 4 + Double(k) * bar
                let from = min(x(1), x(e.median)), to = max(x(1), x(e.median))
                doc.rect(from, yk, max(to - from, 1), bar - 1, fill: colours[k],
                         title: "\(row.name), \(Self.ratios[k].2): \(Self.ratioText(e.median)) [\(Self.ratioText(e.low)), \(Self.ratioText(e.high))]")
                doc.line(x(e.low), yk + bar / 2, x(e.high), yk + bar / 2, stroke: "#333")
                doc.text(min(max(x(e.median), x(e.high)), width - 60) + 4, yk + bar - 2, Self.ratioText(e.median), size: 10)
            }
        }
        return doc.document
    }

    private func pow10(_ d: Int) -> Double { (0..<abs(d)).reduce(1.0) { a, _ in d < 0 ? a / 10 : a * 10 } }
}
