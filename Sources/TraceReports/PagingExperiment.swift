import TraceFormat

/// The paging-strategy experiment (`terrapin experiment paging`, docs/SHADOW.md):
/// MMU workloads as L2 under turtle's paging modes, each run timed by the
/// guest itself, summarised per row and mode with a median and a bootstrap
/// confidence interval over the runs, as text, JSON and an SVG chart.
public struct PagingExperiment: Sendable {
    /// turtle's paging modes, in table order.
    public static let modes = ["ept", "shadow", "identity"]

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
        /// those the #PF exits (shadow faults) and EPT violations.
        public var l2Exits: UInt64 = 0, reflected: UInt64 = 0, pageFaultExits: UInt64 = 0, eptViolations: UInt64 = 0
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

    /// A median and a two-sided 95% interval of the median, from a bootstrap
    /// of the runs (2000 resamples, a fixed seed: the same runs give the
    /// same interval).
    public struct Estimate: Sendable, Equatable {
        public var median: Double, low: Double, high: Double
        public init(median: Double, low: Double, high: Double) { self.median = median; self.low = low; self.high = high }
    }

    public static func estimate(_ values: [Double]) -> Estimate? {
        guard !values.isEmpty else { return nil }
        func median(_ v: [Double]) -> Double {
            let s = v.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        func next() -> UInt64 {                                     // SplitMix64
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        var medians: [Double] = []
        for _ in 0..<2000 {
            medians.append(median((0..<values.count).map { _ in values[Int(next() % UInt64(values.count))] }))
        }
        medians.sort()
        return Estimate(median: median(values), low: medians[50], high: medians[1949])
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

    public func text() -> String {
        var out = "Paging strategies: TSC cycles per operation, median [95% interval over \(rounds) round\(rounds == 1 ? "" : "s")]\n"
        var table = Table(header: ["operation"] + Self.modes.map { "paging=\($0)" } + ["shadow / ept"], leftColumns: 1)
        for row in rows {
            var cells = [row.name]
            for mode in Self.modes {
                guard let e = row.byMode[mode] else { cells.append("-"); continue }
                cells.append("\(Self.cycles(e.median)) [\(Self.cycles(e.low)), \(Self.cycles(e.high))]")
            }
            let ratio = row.byMode["shadow"].flatMap { s in row.byMode["ept"].map { s.median / $0.median } }
            cells.append(ratio.map { fixed($0, 2) } ?? "-")
            table.add(cells)
        }
        out += table.text
        out += "\nPer operation, from the traces (whole runs, boot included): L2 exits reaching L0 / reflected to turtle / #PF exits; L0 exits per episode\n"
        var counts = Table(header: ["workload"] + Self.modes.map { "paging=\($0)" }, leftColumns: 1)
        for (w, workload) in workloads.enumerated() {
            var cells = ["\(workload.guest) \(workload.arguments)"]
            for mode in Self.modes {
                let exits = perOperation(w, mode) { Double($0.l2Exits) }
                let reflected = perOperation(w, mode) { Double($0.reflected) }
                let faults = perOperation(w, mode) { Double($0.pageFaultExits) }
                let episodes = runs.filter { $0.workload == w && $0.mode == mode }.map(\.multiplication)
                let multiplication = episodes.isEmpty ? 0 : episodes.reduce(0, +) / Double(episodes.count)
                cells.append("\(fixed(exits, 2)) / \(fixed(reflected, 2)) / \(fixed(faults, 2)); \(fixed(multiplication, 1))")
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
        let rowJSON = rows.map { row -> String in
            let modes = Self.modes.map { "\"\($0)\": \(estimate(row.byMode[$0]))" }.joined(separator: ", ")
            let ratio = row.byMode["shadow"].flatMap { s in row.byMode["ept"].map { s.median / $0.median } }
            return "    {\"name\": \(jsonString(row.name)), \"workload\": \(row.workload), \"unit\": \"TSC cycles per operation\", "
                + "\"modes\": {\(modes)}, \"shadow_over_ept\": \(ratio.map { fixed($0, 4) } ?? "null")}"
        }
        let workloadJSON = workloads.map {
            "    {\"guest\": \(jsonString($0.guest)), \"arguments\": \(jsonString($0.arguments)), \"operations\": \($0.operations)}"
        }
        let runJSON = runs.map { r in
            "    {\"workload\": \(r.workload), \"mode\": \"\(r.mode)\", \"round\": \(r.round), \"status\": \(r.status), "
                + "\"figures\": [\(r.figures.map { fixed($0, 1) }.joined(separator: ", "))], \"trace\": \(jsonString(r.trace)), "
                + "\"l2_exits\": \(r.l2Exits), \"reflected\": \(r.reflected), \"page_fault_exits\": \(r.pageFaultExits), "
                + "\"ept_violations\": \(r.eptViolations), \"multiplication\": \(fixed(r.multiplication, 3))}"
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

    /// Bars of shadow / ept per row on a log scale, with the interval
    /// bounds of the two modes' ratio (low of shadow over high of ept, and
    /// the reverse) as whiskers.
    public func svg() -> String {
        let rows = self.rows
        let rowHeight = 26.0, left = 260.0, width = 900.0, top = 50.0
        let height = Int(top + Double(rows.count) * rowHeight + 50)
        var doc = SVG(width: Int(width), height: height)
        doc.text(10, 22, "Shadow-on-EPT / EPT-on-EPT, TSC cycles per operation (log scale; 1 = as fast)", size: 14)
        let ratios = rows.compactMap { row in row.byMode["shadow"].flatMap { s in row.byMode["ept"].map { (s, $0) } } }
        let highest = max(10, ratios.map { $0.0.high / max($0.1.low, 1e-9) }.max() ?? 10)
        let decades = max(1, Int(log10(highest).rounded(.up)))
        let plot = width - left - 30
        func x(_ ratio: Double) -> Double { left + plot * min(max(log10(max(ratio, 0.1)) + 1, 0), Double(decades + 1)) / Double(decades + 1) }
        for d in -1...decades {
            let at = x(pow10(d))
            doc.line(at, top - 8, at, top + Double(rows.count) * rowHeight, stroke: d == 0 ? "#000" : "#ccc")
            doc.text(at, top + Double(rows.count) * rowHeight + 16, d < 0 ? "0.1" : fixed(pow10(d), 0), size: 11, anchor: .middle)
        }
        for (i, row) in rows.enumerated() {
            let y = top + Double(i) * rowHeight
            doc.text(left - 8, y + 16, row.name, size: 12, anchor: .end)
            guard let s = row.byMode["shadow"], let e = row.byMode["ept"] else { continue }
            let ratio = s.median / e.median
            doc.rect(x(1), y + 4, max(x(ratio) - x(1), 1), rowHeight - 8, fill: ratio >= 1 ? "#c0504d" : "#4f81bd",
                     title: "\(row.name): \(fixed(ratio, 2))")
            doc.line(x(s.low / e.high), y + rowHeight / 2, x(s.high / e.low), y + rowHeight / 2, stroke: "#333")
            doc.text(min(x(ratio), width - 60) + 4, y + 16, fixed(ratio, ratio >= 10 ? 0 : 2), size: 11)
        }
        return doc.document
    }

    private func pow10(_ d: Int) -> Double { (0..<abs(d)).reduce(1.0) { a, _ in d < 0 ? a / 10 : a * 10 } }
}
