#!/usr/bin/env python3
"""Checks a `terrapin-trace export --format perfetto` file against Perfetto's
own protobuf definitions (the `perfetto` Python package's perfetto_trace_pb2)
and against the trace it came from (read with scripts/trace_numpy.py).

    python3 scripts/check_perfetto.py run.trc run.pftrace

It checks that:
- the file parses as perfetto.protos.Trace with no unknown field anywhere
  (so every field number and wire type the exporter wrote is Perfetto's);
- each packet with compressed_packets (the default export) holds nothing
  else, and its bytes inflate with zlib (RFC 1950, as Perfetto's trace
  processor inflates them) to a Trace whose packets take its place, in
  order; the checks below are on the packets so expanded;
- there is a process track and one track per (vCPU, level) of the trace, each
  used track described, names and ordering as Traces/README.md says;
- timestamps resolve through the sequence's defaults and clock snapshot
  (an incremental clock: each delta adds to the previous packet's time on
  it; a packet may give an absolute BOOTTIME time instead), and events
  without a track_uuid are on the default track (TrackEventDefaults);
- on every track, BEGIN/END events nest properly once sorted by timestamp
  (stably, as the trace processor orders packets), and every slice ends at
  or after its start;
- interned names resolve, and the exits are the trace's exits in order (each
  slice that was not moved starting at its record's time), with
  their reasons' kinds, record indices and fields in the debug annotations;
- episodes are slices named "episode E: ..." (one per episode root).
Prints a one-line summary and exits 0, or prints what failed and exits 1.
Needs numpy and perfetto (scripts/python-deps numpy perfetto).
"""

import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trace_numpy  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb  # noqa: E402

problems = []
TRACK_BASE = 2          # the track of (vCPU V, level L) has uuid 2 + V * 256 + L
BOOTTIME = 6            # BuiltinClock BOOTTIME, the trace clock


def fail(message):
    problems.append(message)
    if len(problems) > 20:
        report()


def report():
    for p in problems:
        print("check_perfetto: " + p)
    sys.exit(1)


def unknown_fields(message, path="packet"):
    """Paths of unknown fields in `message` and every message inside it."""
    found = []
    try:
        from google.protobuf.unknown_fields import UnknownFieldSet
        if len(UnknownFieldSet(message)) > 0:
            found.append(path)
    except ImportError:  # older protobuf: UnknownFields() on the message
        if len(message.UnknownFields()) > 0:
            found.append(path)
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:
            repeated = field.label == field.LABEL_REPEATED
        values = value if repeated else [value]
        for v in values:
            found += unknown_fields(v, path + "." + field.name)
    return found


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: check_perfetto.py TRACE.trc EXPORT.pftrace\n")
        return 64
    source = trace_numpy.load(argv[0])
    data = open(argv[1], "rb").read()
    trace = pb.Trace()
    try:
        trace.ParseFromString(data)
    except DecodeError as e:
        print(f"check_perfetto: {argv[1]} does not parse as perfetto.protos.Trace: {e}")
        return 1
    packets, compressed = [], 0
    for i, p in enumerate(trace.packet):
        if not p.HasField("compressed_packets"):
            packets.append(p)
            continue
        compressed += 1
        if len(p.ListFields()) != 1:
            fail(f"packet {i}: a compressed packet with other fields: {[f.name for f, _ in p.ListFields()]}")
        inner = pb.Trace()
        try:
            inner.ParseFromString(zlib.decompress(p.compressed_packets))
        except (zlib.error, DecodeError) as e:
            print(f"check_perfetto: packet {i}: compressed_packets does not inflate to a Trace: {e}")
            return 1
        packets.extend(inner.packet)
    for i, p in enumerate(packets):
        for path in unknown_fields(p):
            fail(f"packet {i}: unknown field in {path}")

    descriptors = {p.track_descriptor.uuid: p.track_descriptor for p in packets if p.HasField("track_descriptor")}
    records = source.records
    tids = sorted({int(v) * 256 + int(l) for v, l in zip(records["vcpu"].tolist(), records["level"].tolist())})
    process = [d for d in descriptors.values() if d.HasField("process")]
    if len(process) != 1 or process[0].process.pid != 1:
        fail(f"expected one process track with pid 1, found {len(process)}")
    elif process[0].child_ordering != pb.TrackDescriptor.ChildTracksOrdering.EXPLICIT:
        fail("the process track does not order its children explicitly")
    vcpus = {t // 256 for t in tids}
    for tid in tids:
        d = descriptors.get(TRACK_BASE + tid)
        level, vcpu = tid % 256, tid // 256
        name = f"L{level}" if vcpus == {0} else f"L{level} vCPU{vcpu}"
        if d is None:
            fail(f"no track for level {level} vCPU {vcpu}")
        elif d.name != name or d.parent_uuid != process[0].uuid or d.sibling_order_rank != level * 65536 + vcpu:
            fail(f"track {tid}: name {d.name!r}, parent {d.parent_uuid}, rank {d.sibling_order_rank}")
    if len(descriptors) != len(tids) + 1:
        fail(f"{len(descriptors)} track descriptors for {len(tids)} tracks and the process")

    names, strings, annotation_names = {}, {}, {}
    per_track = {}
    exits, instants, episodes = [], [], 0
    default_clock, default_track = BOOTTIME, None
    clock_base = {BOOTTIME: 0}      # each clock's time at BOOTTIME 0, from the snapshot
    incremental = {}                # incremental clock id -> its current value
    for i, p in enumerate(packets):
        if p.HasField("trace_packet_defaults"):
            d = p.trace_packet_defaults
            default_clock = d.timestamp_clock_id if d.HasField("timestamp_clock_id") else BOOTTIME
            default_track = d.track_event_defaults.track_uuid if d.HasField("track_event_defaults") else None
        if p.HasField("clock_snapshot"):
            boot = [c.timestamp for c in p.clock_snapshot.clocks if c.clock_id == BOOTTIME]
            if not boot:
                fail(f"packet {i}: a clock snapshot without BOOTTIME")
            for c in p.clock_snapshot.clocks:
                clock_base[c.clock_id] = c.timestamp - (boot[0] if boot else 0)
                if c.is_incremental:
                    incremental[c.clock_id] = c.timestamp
        if p.HasField("interned_data"):
            for e in p.interned_data.event_names:
                names[e.iid] = e.name
            for e in p.interned_data.debug_annotation_string_values:
                strings[e.iid] = e.str.decode()
            for e in p.interned_data.debug_annotation_names:
                annotation_names[e.iid] = e.name
        if not p.HasField("track_event"):
            continue
        e = p.track_event
        if p.trusted_packet_sequence_id != 1:
            fail(f"packet {i}: sequence {p.trusted_packet_sequence_id}")
        clock = p.timestamp_clock_id if p.HasField("timestamp_clock_id") else default_clock
        if clock in incremental:
            incremental[clock] += p.timestamp
            ts = incremental[clock] - clock_base[clock]
        elif clock in clock_base:
            ts = p.timestamp - clock_base[clock]
        else:
            fail(f"packet {i}: clock {clock} has no snapshot")
            ts = p.timestamp
        track = e.track_uuid if e.HasField("track_uuid") else default_track
        if track not in descriptors:
            fail(f"packet {i}: undescribed track {track}")
        per_track.setdefault(track, []).append((ts, i, e.type))
        args = {}
        for a in e.debug_annotations:
            key = annotation_names.get(a.name_iid, f"?{a.name_iid}")
            which = a.WhichOneof("value")
            args[key] = strings.get(a.string_value_iid) if which == "string_value_iid" else getattr(a, which)
        if e.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            if e.HasField("name"):
                episodes += 1
                if not e.name.startswith("episode "):
                    fail(f"packet {i}: slice named {e.name!r}")
            else:
                exits.append((names.get(e.name_iid), args, track, ts))
        elif e.type == pb.TrackEvent.TYPE_INSTANT:
            instants.append((names.get(e.name_iid), args, track))
        elif e.type != pb.TrackEvent.TYPE_SLICE_END:
            fail(f"packet {i}: event type {e.type}")
    for uuid, events in per_track.items():
        stack = []
        for ts, i, kind in sorted(events, key=lambda x: x[0]):   # stable: file order among equal times
            if kind == pb.TrackEvent.TYPE_SLICE_BEGIN:
                stack.append(ts)
            elif kind == pb.TrackEvent.TYPE_SLICE_END:
                if not stack:
                    fail(f"packet {i}: END without BEGIN on track {uuid}")
                elif stack.pop() > ts:
                    fail(f"packet {i}: slice ends before it begins")
        if stack:
            fail(f"track {uuid}: {len(stack)} slices never end")

    is_event = (records["kind_code"] == 15) | (records["kind_code"] == 17)
    expected = [i for i, ev in enumerate(is_event.tolist()) if not ev]
    if len(exits) != len(expected):
        fail(f"{len(exits)} exit slices for {len(expected)} exits")
    if len(instants) != int(is_event.sum()):
        fail(f"{len(instants)} instants for {int(is_event.sum())} events")
    annotated = [args for _, args, _, _ in exits if args]
    for (name, args, uuid, ts), index in zip(exits, expected):
        if name is None:
            fail(f"record {index}: name not interned")
        r = records[index]
        tid = int(r["vcpu"]) * 256 + int(r["level"])
        if uuid != TRACK_BASE + tid:
            fail(f"record {index}: on track {uuid}, expected {TRACK_BASE + tid}")
        if args:
            want = {"record": index, "kind": trace_numpy.kind_name(int(r["kind_code"])),
                    "handler": trace_numpy.handler_name(int(r["handler"])),
                    "rip": int(r["rip"]), "address": int(r["address"]), "value": int(r["value"])}
            if int(r["episode"]):
                want["episode"] = int(r["episode"])
            got = {k: args.get(k) for k in want}
            # A slice the placement did not move starts at the record's time.
            if "timestamp_ns" not in args and ts != int(r["timestamp_ns"]):
                fail(f"record {index}: slice at {ts} ns, recorded at {int(r['timestamp_ns'])} ns")
            if got != want:
                fail(f"record {index}: annotations {got}, expected {want}")
            if int(r["vmx_reason"]) == trace_numpy.NO_VMX_REASON and name != want["kind"]:
                fail(f"record {index}: named {name!r}, expected its kind {want['kind']!r}")
    if problems:
        report()
    per_record = len(data) / max(1, len(records))
    print(f"check_perfetto: ok: {len(packets)} packets ({compressed} compressed packets), {len(tids)} tracks, {len(exits)} exit slices "
          f"({len(annotated)} annotated), {episodes} episode slices, {len(instants)} instants, "
          f"{per_record:.1f} bytes per record")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
