/// Perfetto's native trace format: a `Trace` protobuf of `TracePacket`s
/// (Traces/README.md, "export"), written with `ProtoWire` straight into the
/// output buffer. The same tracks, slices and placement as the JSON export
/// (`PerfettoExport`), as track events:
///
/// - one track descriptor per run (a process track, pid 1, named after the
///   command) and per level and vCPU under it, ordered by level then vCPU;
/// - each exit a TYPE_SLICE_BEGIN/END pair on its track, named by its reason
///   (interned), with debug annotations; each episode a slice on its root's
///   track named "episode E: REASON ×N", enclosing the root exit; events
///   (interrupt-injected, stopped) TYPE_INSTANT;
/// - slices placed by `PerfettoExport.Track`'s rule (no partial overlaps),
///   and each END written when the next slice on its track starts at or
///   after it, or at the end, so that every track's events are in time order
///   and properly nested in the file; the tracks interleave, and the trace
///   processor sorts by timestamp.
///
/// Field numbers are those of Perfetto's protos (protos/perfetto/trace/:
/// trace.proto, trace_packet.proto, track_event/track_event.proto,
/// track_descriptor.proto, process_descriptor.proto, debug_annotation.proto,
/// interned_data/interned_data.proto); `scripts/check_perfetto.py` decodes
/// the output with the `perfetto` Python package's definitions.
public enum PerfettoProtoExport {
    /// Field numbers, by message.
    enum F {
        static let tracePacket: UInt64 = 1                 // Trace.packet
        // TracePacket
        static let timestamp: UInt64 = 8
        static let sequenceID: UInt64 = 10                 // trusted_packet_sequence_id
        static let trackEvent: UInt64 = 11
        static let internedData: UInt64 = 12
        static let sequenceFlags: UInt64 = 13
        static let clockSnapshot: UInt64 = 6
        static let timestampClockID: UInt64 = 58
        static let packetDefaults: UInt64 = 59             // trace_packet_defaults
        static let trackDescriptor: UInt64 = 60
        static let compressedPackets: UInt64 = 50          // a zlib stream of Trace.packet fields
        static let stateCleared: UInt64 = 1                // SEQ_INCREMENTAL_STATE_CLEARED
        static let needsState: UInt64 = 2                  // SEQ_NEEDS_INCREMENTAL_STATE
        // TracePacketDefaults (timestamp_clock_id = 58 as in TracePacket), TrackEventDefaults
        static let trackEventDefaults: UInt64 = 11
        static let defaultTrackUUID: UInt64 = 11
        // ClockSnapshot, ClockSnapshot.Clock; BuiltinClock BOOTTIME (builtin_clock.proto)
        static let clocks: UInt64 = 1
        static let clockID: UInt64 = 1, clockTimestamp: UInt64 = 2, isIncremental: UInt64 = 3
        static let boottime: UInt64 = 6
        // TrackDescriptor
        static let uuid: UInt64 = 1
        static let trackName: UInt64 = 2
        static let process: UInt64 = 3
        static let parentUUID: UInt64 = 5
        static let childOrdering: UInt64 = 11
        static let siblingOrderRank: UInt64 = 12
        static let explicitOrdering: UInt64 = 3            // ChildTracksOrdering.EXPLICIT
        // ProcessDescriptor
        static let pid: UInt64 = 1
        static let processName: UInt64 = 6
        // TrackEvent
        static let debugAnnotations: UInt64 = 4
        static let type: UInt64 = 9
        static let nameIID: UInt64 = 10
        static let trackUUID: UInt64 = 11
        static let name: UInt64 = 23
        static let sliceBegin: UInt64 = 1, sliceEnd: UInt64 = 2, instant: UInt64 = 3
        // DebugAnnotation
        static let annotationNameIID: UInt64 = 1
        static let uintValue: UInt64 = 3
        static let pointerValue: UInt64 = 7
        static let stringValueIID: UInt64 = 17
        // InternedData, and its EventName / DebugAnnotationName / InternedString entries
        static let eventNames: UInt64 = 2
        static let annotationNames: UInt64 = 3
        static let annotationStrings: UInt64 = 29
        static let iid: UInt64 = 1
        static let entryName: UInt64 = 2                   // EventName.name, DebugAnnotationName.name, InternedString.str
    }

    /// Interned debug-annotation names, by iid (1-based).
    static let annotationNames = ["record", "kind", "handler", "episode", "rip", "address", "value",
                                  "timestamp_ns", "duration_ns", "exits", "records", "time_ns"]
    enum A {
        static let record: UInt64 = 1, kind: UInt64 = 2, handler: UInt64 = 3, episode: UInt64 = 4, rip: UInt64 = 5
        static let address: UInt64 = 6, value: UInt64 = 7, timestamp: UInt64 = 8, duration: UInt64 = 9
        static let exits: UInt64 = 10, records: UInt64 = 11, time: UInt64 = 12
    }

    static let sequence: UInt64 = 1
    /// The sequence's own clock (ids 64-127 are sequence-scoped,
    /// clock_snapshot.proto): incremental, so each packet's timestamp is the
    /// delta from the previous packet on it, in ns, and equal to BOOTTIME
    /// (the trace clock) at 0. A packet that would go back in time (an END
    /// written after later packets of other tracks) carries its absolute
    /// time on BOOTTIME instead, and leaves the incremental clock where it was.
    static let deltaClock: UInt64 = 64
    static let episodePrefix = Array("episode ".utf8), episodeColon = Array(": ".utf8), episodeTimes = Array(" ×".utf8)
    static let processUUID: UInt64 = 1
    /// The track of level L of vCPU V: as the JSON export's tid, V × 256 + L,
    /// plus 2 (after the process track's 1), so that vCPU 0's tracks take a
    /// one-byte varint.
    static func trackUUID(_ tid: Int) -> UInt64 { 2 + UInt64(tid) }

    /// Writes `reader` as a Perfetto trace; with `annotations` false, exits
    /// and episodes carry no debug annotations (smaller, same slices). With
    /// `compressed` (the default), the packets go out in compressed packets
    /// of about 1 MiB of packets each (`PacketCompressor`), all written by
    /// the time it returns; the packets inside are byte for byte those
    /// written without it.
    public static func write(_ reader: TraceReader, to out: TextOutput, annotations: Bool = true,
                             compressed: Bool = true) {
        if compressed { out.compressPackets() }
        let analysis = EpisodeAnalysis(reader, topSequences: 0, worst: 0)
        // Records per track: vCPUs 0-15 (tid < 4096) in an array, others in a dictionary.
        var near = [Int](repeating: 0, count: 4096)
        var far: [Int: Int] = [:]
        near.withUnsafeMutableBufferPointer { near in
            reader.forEach { r in
                let tid = Int(r.vcpu) &* 256 &+ Int(r.level)
                if tid < 4096 { near[tid] &+= 1 } else { far[tid, default: 0] += 1 }
            }
        }
        var counts = far
        for (tid, n) in near.enumerated() where n > 0 { counts[tid] = n }
        // The busiest track is the sequence's default (TrackEventDefaults): its events name no track.
        let busiest = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }?.key ?? -1
        var writer = Writer(out: out, annotations: annotations, defaultTid: busiest)
        writer.descriptors(command: reader.metadata["command"] ?? reader.path, tids: counts.keys.sorted())
        // Episodes come in order of their first record: each is written just before it.
        let episodes = analysis.episodes
        var next = 0
        var index = 0
        reader.forEach { r in
            while next < episodes.count && episodes[next].firstRecord == index {
                writer.episode(episodes[next])
                next += 1
            }
            writer.record(r, index: index)
            index += 1
        }
        writer.finish()
        if compressed { out.endCompressedPackets() }
    }

    /// The per-track placement, the interning state and the packet writer.
    struct Writer {
        let out: TextOutput
        let annotations: Bool
        /// The incremental clock's value and the default track (shared with the END writer).
        let clock: DeltaClock
        /// Open slices per track, in order of first use, found by the track's tid.
        var tracks: [PerfettoExport.Track] = []
        var tids: [Int] = []
        /// Position + 1 of the tracks of vCPUs 0-15 (tid < 4096), else in `position`.
        var nearPosition = [Int](repeating: 0, count: 4096)
        var position: [Int: Int] = [:]
        var lastTid = -1, last = 0
        /// Interned event names (reason key → iid: kinds at 0-255, VMX reasons
        /// below 128 at 256-383 in `nameIIDs`, 0 = not yet; others in
        /// `eventNames`) and annotation strings (kinds, handlers).
        var nameIIDs = [UInt64](repeating: 0, count: 384)
        var eventNames: [UInt64: UInt64] = [:]
        var nextNameIID: UInt64 = 1
        /// Root reason names as bytes, for episode names.
        var rootNames: [UInt64: [UInt8]] = [:]
        /// Interned annotation strings (kinds, then handlers, by raw value → iid; 0 = not
        /// yet), numbered in order of first use so that they take one-byte varints.
        var kindStrings = [UInt64](repeating: 0, count: 256)
        var handlerStrings = [UInt64](repeating: 0, count: 256)
        var nextStringIID: UInt64 = 1

        init(out: TextOutput, annotations: Bool, defaultTid: Int = -1) {
            self.out = out
            self.annotations = annotations
            self.clock = DeltaClock(defaultTid: defaultTid)
        }

        /// One packet: reserves room for `size` bytes, then writes `body` as a Trace.packet field.
        @inline(__always)
        func packet(size: Int = 1024, _ body: (inout ProtoWire) -> Void) {
            Writer.packet(out, size: size, body)
        }

        @inline(__always)
        static func packet(_ out: TextOutput, size: Int, _ body: (inout ProtoWire) -> Void) {
            let start = out.reserve(size)
            var w = ProtoWire(p: start)
            w.message(F.tracePacket, body)
            out.commit(w.p - start)
        }

        /// The process track, a track per level and vCPU, and the interned annotation names.
        func descriptors(command: String, tids: [Int]) {
            let name = String(("terrapin: " + command).unicodeScalars.prefix(1000))
            packet(size: name.utf8.count + 64) { w in
                w.message(F.trackDescriptor) { d in
                    d.uint(F.uuid, PerfettoProtoExport.processUUID)
                    d.message(F.process) { p in
                        p.uint(F.pid, 1)
                        p.string(F.processName, name)
                    }
                    d.uint(F.childOrdering, F.explicitOrdering)
                }
            }
            let vcpus = Set(tids.map { $0 / 256 })
            for tid in tids {
                let level = tid % 256, vcpu = tid / 256
                packet { w in
                    w.message(F.trackDescriptor) { d in
                        d.uint(F.uuid, trackUUID(tid))
                        d.uint(F.parentUUID, PerfettoProtoExport.processUUID)
                        d.string(F.trackName, vcpus == [0] ? "L\(level)" : "L\(level) vCPU\(vcpu)")
                        d.int(F.siblingOrderRank, Int64(level * 65536 + vcpu))
                    }
                }
            }
            let defaultTid = clock.defaultTid
            packet { w in
                w.uint(F.sequenceID, PerfettoProtoExport.sequence)
                w.uint(F.sequenceFlags, F.stateCleared)
                w.message(F.packetDefaults) { d in
                    d.uint(F.timestampClockID, PerfettoProtoExport.deltaClock)
                    if defaultTid >= 0 {
                        d.message(F.trackEventDefaults) { t in t.uint(F.defaultTrackUUID, trackUUID(defaultTid)) }
                    }
                }
                w.message(F.internedData) { d in
                    for (i, n) in PerfettoProtoExport.annotationNames.enumerated() {
                        d.message(F.annotationNames) { e in
                            e.uint(F.iid, UInt64(i + 1))
                            e.string(F.entryName, n)
                        }
                    }
                }
            }
            // Both clocks at 0: the incremental clock starts at the trace's time zero.
            packet { w in
                w.uint(F.sequenceID, PerfettoProtoExport.sequence)
                w.message(F.clockSnapshot) { c in
                    c.message(F.clocks) { k in
                        k.uint(F.clockID, F.boottime)
                        k.uint(F.clockTimestamp, 0)
                    }
                    c.message(F.clocks) { k in
                        k.uint(F.clockID, PerfettoProtoExport.deltaClock)
                        k.uint(F.clockTimestamp, 0)
                        k.uint(F.isIncremental, 1)
                    }
                }
            }
            clock.last = 0
        }

        /// The position of the track of `tid` in `tracks`.
        @inline(__always)
        mutating func select(_ tid: Int) -> Int {
            if tid == lastTid { return last }
            lastTid = tid
            if tid < nearPosition.count, nearPosition[tid] > 0 {
                last = nearPosition[tid] - 1
            } else if tid >= nearPosition.count, let i = position[tid] {
                last = i
            } else {
                last = tracks.count
                if tid < nearPosition.count { nearPosition[tid] = last + 1 } else { position[tid] = last }
                tracks.append(PerfettoExport.Track())
                tids.append(tid)
            }
            return last
        }

        /// Places [start, end) on track `tid`, writing the ENDs of the slices it closes.
        @inline(__always)
        mutating func place(_ tid: Int, _ start: UInt64, _ end: UInt64, parent: Bool) -> (UInt64, UInt64) {
            let i = select(tid)
            let out = self.out, clock = self.clock
            return tracks[i].place(start, end, parent: parent) { Writer.sliceEnd(out, clock, tid, at: $0) }
        }

        static func sliceEnd(_ out: TextOutput, _ clock: DeltaClock, _ tid: Int, at t: UInt64) {
            packet(out, size: 64) { w in
                clock.stamp(&w, t)
                w.uint(F.sequenceID, PerfettoProtoExport.sequence)
                w.uint(F.sequenceFlags, F.needsState)
                w.message(F.trackEvent) { e in
                    e.uint(F.type, F.sliceEnd)
                    clock.track(&e, tid)
                }
            }
        }

        mutating func episode(_ e: EpisodeAnalysis.Episode) {
            let tid = Int(e.vcpu) * 256 + Int(e.rootLevel)
            let (s, _) = place(tid, e.start, e.end, parent: true)
            // "episode E: REASON ×N", written as bytes: one per episode, so no String.
            var reasonName = rootNames[e.rootReason.key] ?? []
            if reasonName.isEmpty {
                reasonName = Array(e.rootReason.name.utf8)
                rootNames[e.rootReason.key] = reasonName
            }
            let annotations = self.annotations, clock = self.clock
            packet { w in
                clock.stamp(&w, s)
                w.uint(F.sequenceID, PerfettoProtoExport.sequence)
                w.uint(F.sequenceFlags, F.needsState)
                w.message(F.trackEvent) { t in
                    t.uint(F.type, F.sliceBegin)
                    clock.track(&t, tid)
                    t.message(F.name) { n in
                        n.raw(PerfettoProtoExport.episodePrefix)
                        n.decimalText(e.id)
                        n.raw(PerfettoProtoExport.episodeColon)
                        n.raw(reasonName)
                        n.raw(PerfettoProtoExport.episodeTimes)
                        n.decimalText(UInt64(e.exits))
                    }
                    if annotations {
                        annotate(&t, A.episode, e.id)
                        annotate(&t, A.exits, UInt64(e.exits))
                        annotate(&t, A.records, UInt64(e.records))
                        annotate(&t, A.time, e.time)
                    }
                }
            }
        }

        mutating func record(_ r: TraceRecord, index: Int) {
            let tid = Int(r.vcpu) * 256 + Int(r.level)
            let reason = ExitReason(r)
            let isEvent = r.kind.isEvent
            var s = r.timestamp, end = r.timestamp
            if isEvent {
                _ = select(tid)
            } else {
                (s, end) = place(tid, r.timestamp, saturatingAdd(r.timestamp, UInt64(r.duration)), parent: false)
            }
            // Names met for the first time are interned in this packet.
            let near = reason.isVMX ? (reason.code < 128 ? 256 + Int(reason.code) : -1) : Int(reason.key)
            var nameIID = near >= 0 ? nameIIDs[near] : (eventNames[reason.key] ?? 0)
            let newName = nameIID == 0
            if newName {
                nameIID = nextNameIID
                nextNameIID += 1
                if near >= 0 { nameIIDs[near] = nameIID } else { eventNames[reason.key] = nameIID }
            }
            let kind = Int(r.kind.rawValue), handler = Int(r.handler.rawValue)
            let newKind = annotations && kindStrings[kind] == 0, newHandler = annotations && handlerStrings[handler] == 0
            if newKind { kindStrings[kind] = nextStringIID; nextStringIID += 1 }
            if newHandler { handlerStrings[handler] = nextStringIID; nextStringIID += 1 }
            let kindIID = kindStrings[kind], handlerIID = handlerStrings[handler]
            let annotations = self.annotations, clock = self.clock
            let moved = s != r.timestamp || end - s != UInt64(r.duration)
            packet { w in
                clock.stamp(&w, s)
                w.uint(F.sequenceID, PerfettoProtoExport.sequence)
                if newName || newKind || newHandler {
                    w.message(F.internedData) { d in
                        if newName {
                            d.message(F.eventNames) { n in
                                n.uint(F.iid, nameIID)
                                n.string(F.entryName, reason.name)
                            }
                        }
                        if newKind {
                            d.message(F.annotationStrings) { n in
                                n.uint(F.iid, kindIID)
                                n.string(F.entryName, r.kind.name)
                            }
                        }
                        if newHandler {
                            d.message(F.annotationStrings) { n in
                                n.uint(F.iid, handlerIID)
                                n.string(F.entryName, r.handler.name)
                            }
                        }
                    }
                }
                w.uint(F.sequenceFlags, F.needsState)
                w.message(F.trackEvent) { t in
                    t.uint(F.type, isEvent ? F.instant : F.sliceBegin)
                    clock.track(&t, tid)
                    t.uint(F.nameIID, nameIID)
                    guard annotations else { return }
                    annotate(&t, A.record, UInt64(index))
                    annotate(&t, A.kind, string: kindIID)
                    annotate(&t, A.handler, string: handlerIID)
                    if r.episode != 0 { annotate(&t, A.episode, r.episode) }
                    annotate(&t, A.rip, pointer: r.rip)
                    annotate(&t, A.address, pointer: r.address)
                    annotate(&t, A.value, pointer: r.value)
                    if moved {
                        annotate(&t, A.timestamp, r.timestamp)
                        annotate(&t, A.duration, UInt64(r.duration))
                    }
                }
            }
        }

        /// Closes every open slice, innermost first, track by track.
        func finish() {
            for (i, tid) in tids.enumerated() {
                for slice in tracks[i].open.reversed() { Writer.sliceEnd(out, clock, tid, at: slice.end) }
            }
        }
    }

    /// The sequence's incremental clock (`deltaClock`) and default track.
    final class DeltaClock {
        /// The incremental clock's current value: the time of the last packet stamped on it.
        var last: UInt64 = 0
        let defaultTid: Int
        init(defaultTid: Int) { self.defaultTid = defaultTid }

        /// The packet's timestamp: a delta on the incremental clock, or the
        /// absolute time on BOOTTIME when `t` is before the clock's value.
        @inline(__always)
        func stamp(_ w: inout ProtoWire, _ t: UInt64) {
            if t >= last {
                w.uint(F.timestamp, t - last)
                last = t
            } else {
                w.uint(F.timestamp, t)
                w.uint(F.timestampClockID, F.boottime)
            }
        }

        /// The event's track, unless it is the default track.
        @inline(__always)
        func track(_ e: inout ProtoWire, _ tid: Int) {
            if tid != defaultTid { e.uint(F.trackUUID, trackUUID(tid)) }
        }
    }

}

@inline(__always)
private func annotate(_ w: inout ProtoWire, _ name: UInt64, _ v: UInt64) {
    w.message(PerfettoProtoExport.F.debugAnnotations) { a in
        a.uint(PerfettoProtoExport.F.annotationNameIID, name)
        a.uint(PerfettoProtoExport.F.uintValue, v)
    }
}

@inline(__always)
private func annotate(_ w: inout ProtoWire, _ name: UInt64, pointer v: UInt64) {
    w.message(PerfettoProtoExport.F.debugAnnotations) { a in
        a.uint(PerfettoProtoExport.F.annotationNameIID, name)
        a.uint(PerfettoProtoExport.F.pointerValue, v)
    }
}

@inline(__always)
private func annotate(_ w: inout ProtoWire, _ name: UInt64, string iid: UInt64) {
    w.message(PerfettoProtoExport.F.debugAnnotations) { a in
        a.uint(PerfettoProtoExport.F.annotationNameIID, name)
        a.uint(PerfettoProtoExport.F.stringValueIID, iid)
    }
}
