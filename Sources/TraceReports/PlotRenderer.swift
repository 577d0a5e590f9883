import TraceFormat

/// Lays out the plot: a title, a stacked-area timeline of exits/s per
/// (level, reason) with its legend, a log-log handling-time histogram
/// with one bar per level in each power-of-two bucket, and one such
/// histogram per (level, reason) for the most frequent reasons.
public struct PlotRenderer {
    public init(reader: TraceReader, timeline: Timeline, series: Int) {
        self.reader = reader; self.timeline = timeline; self.series = series
    }

    let reader: TraceReader
    let timeline: Timeline
    let series: Int

    static let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                          "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
    static let levelColors = ["#4e79a7", "#e15759", "#59a14f", "#b07aa1", "#f28e2b"]

    let left = 90.0, plotWidth = 700.0, legendX = 815.0

    /// Characters of the 16 px bold title and of the 12 px lines that fit
    /// in the 1060 px between the margins (about 0.6 em per character).
    static let titleWidth = 105
    static let lineWidth = 145

    public func render() -> String {
        var svg = SVG(width: 1100, height: 1330)
        let command = reader.metadata["command"] ?? reader.path
        for (i, line) in Self.wrap("terrapin-trace: " + command, width: Self.titleWidth, lines: 2).enumerated() {
            svg.text(20, 28 + Double(i) * 20, line, size: 16, bold: true)
        }
        let exits = timeline.series.reduce(0) { $0 + $1.total }
        var subtitle = "\(reader.recordCount) records · \(exits) exits · "
            + "\(durationText(timeline.span)) in \(timeline.binCount) bins of " + durationText(timeline.binWidth)
        if let selection = reader.selection { subtitle += " · selection: " + selection }
        svg.text(20, 70, clip(reader.path + " · " + subtitle, Self.lineWidth), size: 12, fill: "#555")
        drawTimeline(&svg, top: 110, height: 320)
        drawHistogram(&svg, top: 540, height: 250)
        drawReasonHistograms(&svg, top: 910)
        return svg.document
    }

    private func clip(_ s: String, _ n: Int) -> String { s.count <= n ? s : String(s.prefix(n - 1)) + "…" }

    /// `text` in at most `lines` lines of at most `width` characters, broken
    /// at spaces where there is one (else inside a word); what does not fit
    /// ends the last line with "…".
    static func wrap(_ text: String, width: Int, lines: Int) -> [String] {
        var out: [String] = []
        var rest = Substring(text)
        while !rest.isEmpty && out.count < lines {
            if rest.count <= width {
                out.append(String(rest))
                rest = ""
                break
            }
            if out.count == lines - 1 {
                out.append(String(rest.prefix(width - 1)) + "…")
                rest = ""
                break
            }
            let head = rest.prefix(width)
            if let space = head.lastIndex(of: " "), space > head.startIndex {
                out.append(String(rest[rest.startIndex..<space]))
                rest = rest[rest.index(after: space)...]
            } else {
                out.append(String(head))
                rest = rest.dropFirst(width)
            }
        }
        return out
    }

    /// The unit of the time axis for a span in ns: (ns per unit, name).
    static func timeUnit(span: Double) -> (scale: Double, name: String) {
        if span >= 10e9 { return (1e9, "s") }
        if span >= 10e6 { return (1e6, "ms") }
        if span >= 10e3 { return (1e3, "µs") }
        return (1, "ns")
    }

    private func drawTimeline(_ svg: inout SVG, top: Double, height: Double) {
        svg.text(left, top - 14, "Exit rate over time, stacked by level and reason", size: 14, bold: true)
        let shown = timeline.topSeries(series)
        let n = timeline.binCount
        let binSeconds = Double(timeline.binWidth) / 1e9
        var stacked = [Double](repeating: 0, count: n)
        var layers: [[Double]] = []
        for s in shown {
            for i in 0..<n { stacked[i] += Double(s.counts[i]) / binSeconds }
            layers.append(stacked)
        }
        let ticks = niceTicks(max: stacked.max() ?? 0)
        let yMax = max(ticks.last ?? 1, 1e-9)
        func y(_ v: Double) -> Double { top + height - v / yMax * height }
        func x(_ bin: Int) -> Double { left + Double(bin) / Double(n) * plotWidth }
        for t in ticks {
            svg.line(left, y(t), left + plotWidth, y(t), stroke: "#ddd")
            svg.text(left - 6, y(t) + 4, rateLabel(t), size: 11, anchor: .end)
        }
        // Layers from the top of the stack down, so each lower one paints over.
        for (k, s) in shown.enumerated().reversed() {
            let upper = layers[k]
            var points: [(Double, Double)] = [(x(0), y(0))]
            for i in 0..<n { points += [(x(i), y(upper[i])), (x(i + 1), y(upper[i]))] }
            points.append((x(n), y(0)))
            svg.polygon(points, fill: Self.palette[k % Self.palette.count], title: label(s))
        }
        axes(&svg, top: top, height: height)
        // Time axis since the run start, in a unit chosen by the span.
        let unit = Self.timeUnit(span: timeline.span)
        let startMs = Double(timeline.start) / unit.scale
        let spanMs = timeline.span / unit.scale
        let steps = niceTicks(max: spanMs, count: 8)
        let step = steps.count > 1 ? steps[1] : max(spanMs, 1e-6)
        let decimals = step >= 1 ? 0 : step >= 0.1 ? 1 : step >= 0.01 ? 2 : 3
        // At most 64 ticks, by construction: a tick count, not a float that
        // may stop growing when the start is large and the step small.
        let first = (startMs / step).rounded(.up)
        for i in 0..<64 {
            let tick = (first + Double(i)) * step
            guard tick <= startMs + spanMs * 1.0001, spanMs > 0 else { break }
            let px = left + (tick - startMs) / spanMs * plotWidth
            svg.line(px, top + height, px, top + height + 5)
            svg.text(px, top + height + 18, fixed(tick, decimals), size: 11, anchor: .middle)
        }
        svg.text(left + plotWidth / 2, top + height + 38, "time since run start (\(unit.name))", size: 12, anchor: .middle)
        svg.text(24, top + height / 2, "exits/s", size: 12, anchor: .middle, rotate: -90)
        svg.text(legendX, top + 4, "level, reason (exits)", size: 12, bold: true)
        for (k, s) in shown.enumerated() {
            let ly = top + 16 + Double(k) * 20
            svg.rect(legendX, ly, 14, 14, fill: Self.palette[k % Self.palette.count])
            svg.text(legendX + 20, ly + 12, clip(label(s), 36), size: 12)
        }
        if shown.isEmpty { svg.text(left + plotWidth / 2, top + height / 2, "no exits", size: 14, anchor: .middle) }
    }

    private func label(_ s: Timeline.Series) -> String {
        (s.level == 0 ? "other" : s.label) + " (\(s.total))"
    }

    private func rateLabel(_ v: Double) -> String {
        func trim(_ s: String) -> String { s.hasSuffix(".0") ? String(s.dropLast(2)) : s }
        if v >= 1e6 { return trim(fixed(v / 1e6, 1)) + "M" }
        if v >= 1e3 { return trim(fixed(v / 1e3, 1)) + "k" }
        return fixed(v, 0)
    }

    private func axes(_ svg: inout SVG, top: Double, height: Double) {
        svg.line(left, top, left, top + height)
        svg.line(left, top + height, left + plotWidth, top + height)
    }

    private func drawHistogram(_ svg: inout SVG, top: Double, height: Double) {
        svg.text(left, top - 14, "Handling time per exit (power-of-two buckets, log count)", size: 14, bold: true)
        let lat = timeline.latency
        let used = (0..<33).filter { k in lat.contains { $0.buckets[k] > 0 } }
        guard let first = used.first, let last = used.last else {
            axes(&svg, top: top, height: height)
            svg.text(left + plotWidth / 2, top + height / 2, "no exits", size: 14, anchor: .middle)
            return
        }
        let maxCount = lat.flatMap(\.buckets).max() ?? 1
        var decades = 0
        while pow10(decades) < Double(maxCount) { decades += 1 }
        let bottom = -0.3   // log10 of the axis floor, so a count of 1 still shows
        func y(_ c: Double) -> Double { top + height - (log10(c) - bottom) / (Double(decades) - bottom) * height }
        for d in 0...decades {
            svg.line(left, y(pow10(d)), left + plotWidth, y(pow10(d)), stroke: "#ddd")
            svg.text(left - 6, y(pow10(d)) + 4, rateLabel(pow10(d)), size: 11, anchor: .end)
        }
        let buckets = last - first + 1
        let slot = plotWidth / Double(buckets)
        let barWidth = slot * 0.8 / Double(lat.count)
        for (b, k) in (first...last).enumerated() {
            for (j, l) in lat.enumerated() where l.buckets[k] > 0 {
                let c = Double(l.buckets[k])
                let bx = left + Double(b) * slot + slot * 0.1 + Double(j) * barWidth
                svg.rect(bx, y(c), barWidth, top + height - y(c), fill: Self.levelColors[j % Self.levelColors.count],
                         title: "L\(l.level) \(bucketLabel(k)): \(l.buckets[k])")
            }
            let cx = left + (Double(b) + 0.5) * slot
            svg.text(cx, top + height + 16, bucketLabel(k), size: 10, anchor: .end, rotate: -40)
        }
        axes(&svg, top: top, height: height)
        svg.text(left + plotWidth / 2, top + height + 62, "handling time (bucket lower bound; bucket = [t, 2t))", size: 12, anchor: .middle)
        svg.text(24, top + height / 2, "exits (log scale)", size: 12, anchor: .middle, rotate: -90)
        svg.text(legendX, top + 4, "level (exits)", size: 12, bold: true)
        for (j, l) in lat.enumerated() {
            let ly = top + 16 + Double(j) * 20
            svg.rect(legendX, ly, 14, 14, fill: Self.levelColors[j % Self.levelColors.count])
            svg.text(legendX + 20, ly + 12, "L\(l.level) (\(l.buckets.reduce(0, +)))", size: 12)
        }
    }

    /// Reasons with a histogram of their own: the timeline's most frequent.
    static let reasonPanels = 6

    /// Small multiples: the handling-time histogram of each of the
    /// `reasonPanels` most frequent (level, reason) series, three to a row,
    /// in the timeline's colours, over the buckets any of them uses, each
    /// with its own log count axis.
    private func drawReasonHistograms(_ svg: inout SVG, top: Double) {
        let shown = Array(timeline.series.prefix(Self.reasonPanels))
        svg.text(left, top - 14, "Handling time per exit, by level and reason (the \(Self.reasonPanels) most frequent; log count)",
                 size: 14, bold: true)
        let used = (0..<33).filter { k in shown.contains { $0.latency[k] > 0 } }
        guard let first = used.first, let last = used.last else {
            svg.text(left + plotWidth / 2, top + 60, "no exits", size: 14, anchor: .middle)
            return
        }
        let width = 300.0, height = 120.0, gapX = 50.0, rowHeight = 200.0, x0 = 70.0
        let buckets = last - first + 1
        for (i, s) in shown.enumerated() {
            let px = x0 + Double(i % 3) * (width + gapX), py = top + 24 + Double(i / 3) * rowHeight
            // The timeline's colour of this series (its position there, or "other" beyond it).
            let colour = Self.palette[min(i, max(0, series - 1)) % Self.palette.count]
            svg.text(px, py - 8, clip(label(s), 44), size: 12, bold: true)
            let maxCount = s.latency.max() ?? 1
            var decades = 0
            while pow10(decades) < Double(maxCount) { decades += 1 }
            let bottom = -0.3
            func y(_ c: Double) -> Double { py + height - (log10(c) - bottom) / (Double(max(decades, 1)) - bottom) * height }
            for d in 0...max(decades, 1) {
                svg.line(px, y(pow10(d)), px + width, y(pow10(d)), stroke: "#eee")
                svg.text(px - 4, y(pow10(d)) + 4, rateLabel(pow10(d)), size: 9, anchor: .end)
            }
            let slot = width / Double(buckets)
            for (b, k) in (first...last).enumerated() {
                if s.latency[k] > 0 {
                    let c = Double(s.latency[k])
                    svg.rect(px + Double(b) * slot + slot * 0.1, y(c), slot * 0.8, py + height - y(c), fill: colour,
                             title: "\(s.label) \(bucketLabel(k)): \(s.latency[k])")
                }
                // Every other bucket labelled, so the labels do not collide.
                if b % 2 == 0 || buckets <= 8 {
                    svg.text(px + (Double(b) + 0.5) * slot, py + height + 12, bucketLabel(k), size: 9, anchor: .end, rotate: -40)
                }
            }
            svg.line(px, py, px, py + height)
            svg.line(px, py + height, px + width, py + height)
        }
    }

    /// The lower bound of latency bucket k: 0, then 2^(k−1) ns.
    private func bucketLabel(_ k: Int) -> String {
        let v = k == 0 ? 0.0 : Double(UInt64(1) << UInt64(k - 1))
        if v < 1e3 { return fixed(v, 0) + " ns" }
        if v < 1e6 { return fixed(v / 1e3, v < 1e4 ? 1 : 0) + " µs" }
        if v < 1e9 { return fixed(v / 1e6, v < 1e7 ? 1 : 0) + " ms" }
        return fixed(v / 1e9, 1) + " s"
    }

    private func pow10(_ d: Int) -> Double { (0..<d).reduce(1.0) { a, _ in a * 10 } }
}

/// log10 without Foundation (for positive finite values).
func log10(_ x: Double) -> Double {
    guard x > 0 else { return -.infinity }
    var e = 0.0, v = x
    while v >= 10 { v /= 10; e += 1 }
    while v < 1 { v *= 10; e -= 1 }
    // ln(v)/ln(10) by series on (v-1)/(v+1).
    let t = (v - 1) / (v + 1), t2 = t * t
    var term = t, sum = 0.0
    for k in stride(from: 1, to: 41, by: 2) { sum += term / Double(k); term *= t2 }
    return e + 2 * sum / 2.302585092994046
}
