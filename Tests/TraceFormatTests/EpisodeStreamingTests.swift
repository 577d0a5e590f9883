import Foundation
import XCTest
@testable import TraceFormat

/// EpisodeAnalysis in bounded memory: the open-episode table, closing the
/// least recently seen half, late records, and the page release of the scan.
final class EpisodeStreamingTests: TraceTestCase {
    private func root(_ id: UInt64, _ t: UInt64, vcpu: UInt16 = 0) -> TraceRecord {
        TraceRecord(timestamp: t, duration: 10, level: 2, kind: .ioOut, vcpu: vcpu, episode: id, vmxReason: 30,
                    handler: .reflected)
    }

    private func l1(_ id: UInt64, _ t: UInt64, _ reason: UInt32, vcpu: UInt16 = 0) -> TraceRecord {
        TraceRecord(timestamp: t, duration: 5, level: 1, kind: .internalError, vcpu: vcpu, episode: id, vmxReason: reason)
    }

    func testManyInterleavedEpisodesWithinTheLimitAreExact() throws {
        // Two vCPUs, each with one episode open at a time, 40,000 episodes in all.
        var records: [TraceRecord] = []
        var t: UInt64 = 0
        for pair in 0..<20_000 as Range<UInt64> {
            let a = 2 * pair + 1, b = 2 * pair + 2
            let reads = Int(pair % 7)
            records += [root(a, t), root(b, t + 1, vcpu: 1)]
            for j in 0..<reads { records += [l1(a, t + 2 + UInt64(j), 23), l1(b, t + 2 + UInt64(j), 23, vcpu: 1)] }
            records += [l1(a, t + 20, 24), l1(b, t + 21, 24, vcpu: 1)]
            t += 100
        }
        let reader = try TraceReader(path: try writeTrace("pairs.trc", records))
        let kept = EpisodeAnalysis(reader, topSequences: 10, worst: 3, blocks: 4)
        let streamed = EpisodeAnalysis(reader, topSequences: 10, worst: 3, blocks: 4, keepEpisodes: false)
        XCTAssertEqual(kept.episodes.count, 40_000)
        XCTAssertEqual(streamed.episodes.count, 0, "nothing kept per episode")
        for a in [kept, streamed] {
            XCTAssertEqual(a.episodeCount, 40_000)
            XCTAssertEqual(a.lateRecords, 0)
            XCTAssertEqual(a.exitsInEpisodes, UInt64(records.count))
            XCTAssertEqual(a.multiplication.max, 2 + 6)
            XCTAssertEqual(a.sequences.count, 7)
            XCTAssertEqual(a.sequences.first?.episodes, 2 * 2858)   // pair % 7 == 0 occurs 2858 times, the others 2857
            XCTAssertEqual(a.worst(3).map(\.exits), [8, 8, 8])
            XCTAssertEqual(a.worst(3).map(\.id), [13, 14, 27], "ties by time, then the lower id")
        }
        XCTAssertEqual(kept.episodes.map(\.id), Array(1...40_000 as ClosedRange<UInt64>))
        XCTAssertEqual(streamed.sequences, kept.sequences)
        XCTAssertEqual(streamed.roots(), kept.roots())
        // Gathered as episodes close, or recomputed from the kept episodes: the same statistics.
        XCTAssertEqual(kept.roots(blocks: 4), kept.roots())
        XCTAssertEqual(kept.roots(blocks: 2).map(\.episodes), [40_000])
        XCTAssertEqual(kept.worst(12).count, 12, "more than `worst` from the kept episodes")
    }

    func testEpisodesBeyondTheOpenLimitAreClosedAndTheirLateRecordsCounted() throws {
        let n = EpisodePass.openLimit + 100
        var records: [TraceRecord] = []
        for id in 1...n { records.append(root(UInt64(id), UInt64(id))) }            // every episode opens...
        for id in 1...n { records.append(l1(UInt64(id), UInt64(n + id), 24)) }      // ...before any ends
        let reader = try TraceReader(path: try writeTrace("wide.trc", records))
        let a = EpisodeAnalysis(reader, keepEpisodes: false)
        XCTAssertEqual(a.episodeCount, n, "every episode is counted, once")
        XCTAssertGreaterThanOrEqual(a.lateRecords, UInt64(EpisodePass.openLimit / 2))
        XCTAssertLessThan(a.lateRecords, UInt64(n))
        XCTAssertEqual(a.exitsInEpisodes + a.lateRecords, UInt64(2 * n), "each record is in its episode or late")
        XCTAssertEqual(a.orphanEpisodes, 0)
        XCTAssertEqual(a.totalExits, UInt64(2 * n))
    }

    func testAnalysisOfAFileMatchesTheSameBytesInMemory() throws {
        // More than two 16 MiB chunks of the page-releasing scan.
        let p = path("big.trc")
        try SyntheticTrace(records: 600_000, seed: 9).write(to: p)
        let file = try TraceReader(path: p)
        let memory = try TraceReader(bytes: try bytes(p))
        let first = file[0], last = file[file.count - 1]
        let a = EpisodeAnalysis(file, keepEpisodes: false), b = EpisodeAnalysis(memory, keepEpisodes: false)
        XCTAssertGreaterThan(a.episodeCount, 50_000)
        XCTAssertEqual(a.episodeCount, b.episodeCount)
        XCTAssertEqual(a.exitsInEpisodes, b.exitsInEpisodes)
        XCTAssertEqual(a.sequences, b.sequences)
        XCTAssertEqual(a.worst(10).map(\.id), b.worst(10).map(\.id))
        XCTAssertEqual(a.roots(), b.roots())
        // Released pages read back unchanged.
        XCTAssertEqual(file[0], first)
        XCTAssertEqual(file[file.count - 1], last)
        XCTAssertEqual(file[300_000], memory[300_000])
    }
}
