import CZlib
import Foundation
import XCTest
@testable import TraceFormat

/// A protobuf message decoded generically: field number -> values in order
/// (varints as UInt64, length-delimited fields as bytes).
private struct Decoded {
    var varints: [UInt64: [UInt64]] = [:]
    var bytes: [UInt64: [[UInt8]]] = [:]

    init(_ b: ArraySlice<UInt8>) throws {
        var i = b.startIndex
        func varint() throws -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard i < b.endIndex, shift < 64 else { throw DecodeError.truncated }
                let x = b[i]
                i += 1
                v |= UInt64(x & 0x7F) << shift
                if x < 0x80 { return v }
                shift += 7
            }
        }
        while i < b.endIndex {
            let tag = try varint()
            switch tag & 7 {
            case 0: varints[tag >> 3, default: []].append(try varint())
            case 2:
                let n = Int(try varint())
                guard n <= b.endIndex - i else { throw DecodeError.truncated }
                bytes[tag >> 3, default: []].append(Array(b[i..<(i + n)]))
                i += n
            default: throw DecodeError.wireType(tag & 7)
            }
        }
    }

    func one(_ f: UInt64) -> UInt64? { varints[f]?.first }
    func messages(_ f: UInt64) throws -> [Decoded] { try (bytes[f] ?? []).map { try Decoded($0[...]) } }
    func string(_ f: UInt64) -> String? { bytes[f]?.first.map { String(decoding: $0, as: UTF8.self) } }
}

private enum DecodeError: Error { case truncated, wireType(UInt64), inflate(Int32) }

/// Inflates a zlib stream (RFC 1950) with zlib itself, not with the
/// exporter's compressor: a bad stream or Adler-32 throws.
private func inflate(_ z: [UInt8]) throws -> [UInt8] {
    var capacity = max(1024, 8 * z.count)
    while true {
        var out = [UInt8](repeating: 0, count: capacity)
        var n = uLongf(capacity)
        let status = out.withUnsafeMutableBufferPointer { o in
            z.withUnsafeBufferPointer { i in uncompress(o.baseAddress, &n, i.baseAddress, uLong(i.count)) }
        }
        if status == Z_OK { return Array(out[..<Int(n)]) }
        guard status == Z_BUF_ERROR, capacity < 1 << 28 else { throw DecodeError.inflate(status) }
        capacity *= 2
    }
}

/// The packets of an export: every top-level packet, with each compressed
/// packet (TracePacket.compressed_packets, a zlib stream of Trace.packet
/// fields) replaced by the packets inside it, and how many were compressed.
private func packets(of file: [UInt8]) throws -> (packets: [[UInt8]], compressed: Int) {
    typealias F = PerfettoProtoExport.F
    var out: [[UInt8]] = [], compressed = 0
    for packet in try Decoded(file[...]).bytes[F.tracePacket] ?? [] {
        let d = try Decoded(packet[...])
        guard let z = d.bytes[F.compressedPackets] else {
            out.append(packet)
            continue
        }
        XCTAssertEqual(z.count, 1, "one stream per compressed packet")
        XCTAssertTrue(d.varints.isEmpty && d.bytes.count == 1, "a compressed packet holds nothing else")
        compressed += 1
        let inner = try Decoded(try inflate(z[0])[...])
        XCTAssertEqual(Set(inner.bytes.keys).union(inner.varints.keys), [F.tracePacket], "a Trace of packets inside")
        out += inner.bytes[F.tracePacket] ?? []
    }
    return (out, compressed)
}

/// What a reader keeps per packet sequence to place track events
/// (trace_packet_defaults.proto, clock_snapshot.proto): the default clock and
/// track, and the value of each incremental clock.
private struct SequenceState {
    typealias F = PerfettoProtoExport.F
    var defaultClock: UInt64 = F.boottime
    var defaultTrack: UInt64?
    var incremental: [UInt64: UInt64] = [:]
    var absolutePackets = 0, deltaPackets = 0

    /// Reads the defaults and clock snapshots of `packet`; returns its time
    /// in ns on the trace clock (every clock of the export is at 0 at BOOTTIME 0), if it has one.
    mutating func time(of packet: Decoded) throws -> UInt64? {
        for d in try packet.messages(F.packetDefaults) {
            defaultClock = d.one(F.timestampClockID) ?? F.boottime
            defaultTrack = try d.messages(F.trackEventDefaults).first?.one(F.defaultTrackUUID)
        }
        for snapshot in try packet.messages(F.clockSnapshot) {
            for c in try snapshot.messages(F.clocks) where c.one(F.isIncremental) == 1 {
                incremental[try XCTUnwrap(c.one(F.clockID))] = try XCTUnwrap(c.one(F.clockTimestamp))
            }
        }
        guard let t = packet.one(F.timestamp) else { return nil }
        let clock = packet.one(F.timestampClockID) ?? defaultClock
        guard let last = incremental[clock] else {
            XCTAssertEqual(clock, F.boottime, "an absolute time is on BOOTTIME")
            absolutePackets += 1
            return t
        }
        deltaPackets += 1
        incremental[clock] = last + t
        return last + t
    }

    func track(of event: Decoded) -> UInt64? { event.one(F.trackUUID) ?? defaultTrack }
}

/// The native Perfetto export, decoded with a wire-format decoder written
/// here (field numbers as in Perfetto's protos; scripts/check_perfetto.py
/// checks the same files against the perfetto package's definitions).
final class PerfettoProtoTests: TraceTestCase {
    typealias F = PerfettoProtoExport.F

    func testWireEncodingOfVarintsAndLongMessages() throws {
        let buf = UnsafeMutablePointer<UInt8>.allocate(capacity: 1 << 16)
        defer { buf.deallocate() }
        var w = ProtoWire(p: buf)
        w.uint(1, 0)
        w.uint(2, 127)
        w.uint(3, 128)
        w.uint(4, .max)
        for length in [0, 1, 127, 128, 300, 16_383, 16_384] {
            w.message(5) { m in m.string(2, String(repeating: "x", count: length)) }
        }
        w.int(6, -1)
        let d = try Decoded(Array(UnsafeBufferPointer(start: buf, count: w.p - buf))[...])
        XCTAssertEqual(d.varints[1], [0])
        XCTAssertEqual(d.varints[2], [127])
        XCTAssertEqual(d.varints[3], [128])
        XCTAssertEqual(d.varints[4], [.max])
        XCTAssertEqual(d.varints[6], [UInt64.max], "negative int32/int64 as ten-byte two's complement")
        XCTAssertEqual(try d.messages(5).map { $0.string(2)?.count }, [0, 1, 127, 128, 300, 16_383, 16_384])
        // 0x80 encodes as two bytes: 0x80 0x01.
        var v = ProtoWire(p: buf)
        v.varint(0x80)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: buf, count: v.p - buf)), [0x80, 0x01])
    }

    /// The export's packets, compressed ones inflated (the default form) or
    /// plain; checks that the file is in the form asked for.
    private func export(_ reader: TraceReader, annotations: Bool = true, compressed: Bool = true) throws -> [Decoded] {
        let out = try TextOutput(path: path("out.pftrace"))
        PerfettoProtoExport.write(reader, to: out, annotations: annotations, compressed: compressed)
        try out.finish()
        let file = try packets(of: try self.bytes(path("out.pftrace")))
        if compressed {
            XCTAssertGreaterThan(file.compressed, 0)
        } else {
            XCTAssertEqual(file.compressed, 0)
        }
        return try file.packets.map { try Decoded($0[...]) }
    }

    func testTracksSlicesAndAnnotationsMatchTheRecords() throws {
        let p = path("n.trc")
        try SyntheticTrace(records: 3000, seed: 4).write(to: p)
        let reader = try TraceReader(path: p)
        let analysis = EpisodeAnalysis(reader)
        let packets = try export(reader)

        let descriptors = try packets.flatMap { try $0.messages(F.trackDescriptor) }
        XCTAssertEqual(descriptors.count, 3, "the process and L1, L2")
        XCTAssertEqual(try descriptors[0].messages(F.process).first?.string(F.processName),
                       "terrapin: " + (reader.metadata["command"] ?? ""))
        XCTAssertEqual(descriptors[1...].map { $0.string(F.trackName) }, ["L1", "L2"])
        XCTAssertEqual(descriptors[1...].map { $0.one(F.parentUUID) }, [1, 1])

        var names: [UInt64: String] = [:], annotationNames: [UInt64: String] = [:], strings: [UInt64: String] = [:]
        var open: [UInt64: [UInt64]] = [:]
        var exits: [(name: String, args: [String: UInt64], track: UInt64)] = []
        var episodes = 0
        var sequence = SequenceState()
        for packet in packets {
            let time = try sequence.time(of: packet)
            for interned in try packet.messages(F.internedData) {
                for e in try interned.messages(F.eventNames) { names[e.one(F.iid)!] = e.string(F.entryName) }
                for e in try interned.messages(F.annotationNames) { annotationNames[e.one(F.iid)!] = e.string(F.entryName) }
                for e in try interned.messages(F.annotationStrings) { strings[e.one(F.iid)!] = e.string(F.entryName) }
            }
            guard let event = try packet.messages(F.trackEvent).first else { continue }
            XCTAssertEqual(packet.one(F.sequenceID), 1)
            let track = try XCTUnwrap(sequence.track(of: event))
            let t = try XCTUnwrap(time)
            switch event.one(F.type) {
            case F.sliceBegin:
                open[track, default: []].append(t)
                if let name = event.string(F.name) {
                    XCTAssertTrue(name.hasPrefix("episode "), name)
                    episodes += 1
                    continue
                }
                var args: [String: UInt64] = [:]
                for a in try event.messages(F.debugAnnotations) {
                    let key = try XCTUnwrap(annotationNames[try XCTUnwrap(a.one(F.annotationNameIID))])
                    args[key] = a.one(F.uintValue) ?? a.one(F.pointerValue) ?? a.one(F.stringValueIID)
                }
                exits.append((try XCTUnwrap(names[try XCTUnwrap(event.one(F.nameIID))]), args, track))
            case F.sliceEnd:
                let start = try XCTUnwrap(open[track]?.popLast(), "END without BEGIN")
                XCTAssertLessThanOrEqual(start, t)
            default: break
            }
        }
        XCTAssertEqual(open.values.map(\.count).reduce(0, +), 0, "every slice ends")
        // Most packets are stamped with deltas; the busiest track is the default one.
        XCTAssertGreaterThan(sequence.deltaPackets, 4 * sequence.absolutePackets)
        let perTrack = Dictionary(grouping: reader.map { Int($0.vcpu) * 256 + Int($0.level) }, by: { $0 }).mapValues(\.count)
        let busiest = try XCTUnwrap(perTrack.max { $0.value < $1.value })
        XCTAssertEqual(sequence.defaultTrack, PerfettoProtoExport.trackUUID(busiest.key))
        XCTAssertEqual(episodes, analysis.episodes.count)
        let exitRecords = reader.enumerated().filter { !$0.element.kind.isEvent }
        XCTAssertEqual(exits.count, exitRecords.count)
        for (e, (i, r)) in zip(exits, exitRecords) {
            XCTAssertEqual(e.name, ExitReason(r).name, "record \(i)")
            XCTAssertEqual(e.track, 2 + UInt64(r.vcpu) * 256 + UInt64(r.level))
            XCTAssertEqual(e.args["record"], UInt64(i))
            XCTAssertEqual(e.args["rip"], r.rip)
            XCTAssertEqual(e.args["address"], r.address)
            XCTAssertEqual(e.args["value"], r.value)
            XCTAssertEqual(e.args["episode"], r.episode == 0 ? nil : r.episode)
            XCTAssertEqual(e.args["kind"].flatMap { strings[$0] }, r.kind.name)
            XCTAssertEqual(e.args["handler"].flatMap { strings[$0] }, r.handler.name)
        }
    }

    func testWithoutAnnotationsTheSlicesAreTheSame() throws {
        let p = path("n.trc")
        try SyntheticTrace(records: 500, seed: 8).write(to: p)
        let reader = try TraceReader(path: p)
        func events(_ packets: [Decoded]) throws -> [[UInt64?]] {
            try packets.compactMap { packet in
                try packet.messages(F.trackEvent).first.map { e in
                    [packet.one(F.timestamp), e.one(F.type), e.one(F.trackUUID), e.one(F.nameIID)]
                }
            }
        }
        let full = try export(reader), lean = try export(reader, annotations: false, compressed: false)
        XCTAssertEqual(try events(full), try events(lean))
        // Incremental timestamps and a default track: a record costs at most 40 bytes without annotations,
        // uncompressed.
        let bytes = try self.bytes(path("out.pftrace")).count           // the lean export, written last
        XCTAssertLessThanOrEqual(Double(bytes) / Double(reader.recordCount), 40)
        XCTAssertTrue(try lean.allSatisfy { try $0.messages(F.trackEvent).allSatisfy { $0.bytes[F.debugAnnotations] == nil } })
        XCTAssertGreaterThan(try full.flatMap { try $0.messages(F.trackEvent) }.filter { $0.bytes[F.debugAnnotations] != nil }.count, 400)
    }

    /// The default export is compressed packets only, several of them on a
    /// larger trace, whose inflated contents are byte for byte the packets
    /// of `compressed: false`; with annotations it takes at most 40 bytes a
    /// record on the synthetic nested trace.
    func testCompressedPacketsHoldTheUncompressedPackets() throws {
        let p = path("n.trc")
        try SyntheticTrace(records: 40_000, seed: 3).write(to: p)
        let reader = try TraceReader(path: p)
        func file(compressed: Bool) throws -> [UInt8] {
            let out = try TextOutput(path: path("out.pftrace"))
            PerfettoProtoExport.write(reader, to: out, compressed: compressed)
            try out.finish()
            return try bytes(path("out.pftrace"))
        }
        let plain = try file(compressed: false), packed = try file(compressed: true)
        let inflated = try packets(of: packed), direct = try packets(of: plain)
        XCTAssertEqual(direct.compressed, 0)
        XCTAssertGreaterThan(inflated.compressed, 2, "about 1 MiB of packets per compressed packet")
        XCTAssertEqual(try Decoded(packed[...]).bytes[F.tracePacket]?.count, inflated.compressed,
                       "every top-level packet is a compressed one")
        XCTAssertEqual(inflated.packets.count, direct.packets.count)
        XCTAssertTrue(inflated.packets == direct.packets, "the same packets in the same order")
        XCTAssertGreaterThan(Double(plain.count) / Double(reader.recordCount), 60, "annotations written")
        XCTAssertLessThanOrEqual(Double(packed.count) / Double(reader.recordCount), 40)

        // A damaged stream does not inflate (zlib's Adler-32 or its block checks catch it).
        var damaged = packed
        damaged[damaged.count / 2] ^= 0x5A
        XCTAssertThrowsError(try packets(of: damaged))
    }
}
