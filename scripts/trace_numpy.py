#!/usr/bin/env python3
"""Read a Terrapin trace (.trc) into numpy, without a CSV in between.

The layout is the one Traces/README.md specifies (format version 1): a
header, then fixed 64-byte little-endian records. `load` maps the records
with np.memmap as a structured array whose fields are the record's, so a
10 M-record trace opens at once and costs memory only as it is touched.

    import sys; sys.path.insert(0, "scripts")
    import trace_numpy
    t = trace_numpy.load("run.trc")
    t.records["duration_ns"].mean()              # every field is an integer column
    l2 = t.records[t.records["level"] == 2]
    t.metadata["command"], t.finished, t.start_time_ns
    import pandas as pd; df = pd.DataFrame(t.records)   # if pandas is installed

Fields (names as in `terrapin-trace export`): timestamp_ns (u8), duration_ns
(u4), level (u1), kind_code (u1), vcpu (u2), rip, address, value, episode
(u8), vmx_reason (u4; 0xFFFFFFFF = none, see NO_VMX_REASON), handler (u1:
0 l0, 1 reflected, 2 kernel), size (u1), flags (u1: bit 0 unclaimed, 1 string,
2 faulted, 3 ept02-fault, 4 patched-site). KIND_NAMES and HANDLER_NAMES
spell the codes as the tool does.

As a command, it prints a short description of the trace, or with --csv the
records as `terrapin-trace export --format csv --numeric` writes them, less
the `reason` column (the test that keeps the two in agreement uses this):

    python3 scripts/trace_numpy.py run.trc [--csv]

Needs numpy (scripts/python-deps installs it when it is missing).
"""

import sys

import numpy as np

MAGIC = b"TRPNTRAC"
VERSION = 1
RECORD_SIZE = 64
FIXED_HEADER = 40
UNFINISHED = 0xFFFF_FFFF_FFFF_FFFF
NO_VMX_REASON = 0xFFFF_FFFF

# One record (Traces/README.md, "Record (64 bytes)").
RECORD = np.dtype({
    "names": ["timestamp_ns", "duration_ns", "level", "kind_code", "vcpu", "rip", "address", "value",
              "episode", "vmx_reason", "handler", "size", "flags"],
    "formats": ["<u8", "<u4", "u1", "u1", "<u2", "<u8", "<u8", "<u8", "<u8", "<u4", "u1", "u1", "u1"],
    "offsets": [0, 8, 12, 13, 14, 16, 24, 32, 40, 48, 52, 53, 54],
    "itemsize": RECORD_SIZE,
})

KIND_NAMES = {
    1: "io-in", 2: "io-out", 3: "mmio-read", 4: "mmio-write", 5: "hlt", 6: "shutdown", 7: "rdmsr",
    8: "wrmsr", 9: "debug", 10: "internal-error", 11: "interrupted", 12: "irq-window", 13: "fail-entry",
    14: "system-event", 15: "interrupt-injected", 16: "unknown-exit", 17: "stopped", 18: "kernel-exit",
}
HANDLER_NAMES = {0: "l0", 1: "reflected", 2: "kernel"}


def kind_name(code):
    return KIND_NAMES.get(code, f"kind-{code}")


def handler_name(code):
    return HANDLER_NAMES.get(code, f"handler-{code}")


class TraceFormatError(ValueError):
    """A file that is not a readable trace; the message names the file and byte offset."""


class Trace:
    """A trace: its header fields, metadata (dict, in file order) and records (structured array)."""

    def __init__(self, path, version, header_size, finished, start_time_ns, metadata, records, trailing_bytes):
        self.path = path
        self.version = version
        self.header_size = header_size
        self.finished = finished
        self.start_time_ns = start_time_ns
        self.metadata = metadata
        self.records = records
        self.trailing_bytes = trailing_bytes


def load(path):
    """Validates the header as the Swift reader does and maps the records."""
    with open(path, "rb") as f:
        head = f.read(FIXED_HEADER)
        f.seek(0, 2)
        size = f.tell()

    def fail(offset, message):
        return TraceFormatError(f"{path}: byte {offset}: {message}")

    if size == 0:
        raise fail(0, "empty file (no trace header)")
    for i in range(min(len(head), len(MAGIC))):
        if head[i] != MAGIC[i]:
            raise fail(i, "not a Terrapin trace (bad magic)")
    if size < FIXED_HEADER:
        raise fail(size, f"truncated header (file is {size} bytes, the header needs at least {FIXED_HEADER})")
    version = int.from_bytes(head[8:10], "little")
    if version != VERSION:
        raise fail(8, f"unknown version {version} (this reader knows version {VERSION})")
    record_size = int.from_bytes(head[10:12], "little")
    if record_size != RECORD_SIZE:
        raise fail(10, f"record size {record_size}, expected {RECORD_SIZE}")
    header_size = int.from_bytes(head[12:16], "little")
    if header_size == 0 or header_size % 64 != 0:
        raise fail(12, f"header size {header_size} is not a positive multiple of 64")
    if header_size > size:
        raise fail(12, f"header size {header_size} is beyond the end of the {size}-byte file")
    count = int.from_bytes(head[16:24], "little")
    start = int.from_bytes(head[24:32], "little")
    meta_len = int.from_bytes(head[32:36], "little")
    if meta_len > header_size - FIXED_HEADER:
        raise fail(32, f"metadata length {meta_len} does not fit in the {header_size}-byte header")
    with open(path, "rb") as f:
        f.seek(FIXED_HEADER)
        raw = f.read(meta_len)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(FIXED_HEADER + e.start, "metadata is not valid UTF-8") from None
    metadata = {}
    offset = FIXED_HEADER
    for line in text.split("\n") if text else []:
        if line == "" and offset == FIXED_HEADER + len(raw):
            break  # after the final newline
        if "=" not in line:
            raise fail(offset, "metadata line has no '=' (expected key=value)")
        key, value = line.split("=", 1)
        metadata.setdefault(key, value)
        offset += len(line.encode("utf-8")) + 1
    complete, stray = divmod(size - header_size, RECORD_SIZE)
    finished = count != UNFINISHED
    if finished and (count != complete or stray != 0):
        extra = f" and {stray} stray bytes" if stray else ""
        raise fail(16, f"header says {count} records but the file holds {complete}{extra}")
    if complete == 0:
        records = np.zeros(0, dtype=RECORD)
    else:
        records = np.memmap(path, dtype=RECORD, mode="r", offset=header_size, shape=(complete,))
    return Trace(path, version, header_size, finished, start, metadata, records, stray if not finished else 0)


CSV_COLUMNS = ["record", "timestamp_ns", "duration_ns", "level", "vcpu", "kind", "kind_code", "vmx_reason",
               "handler", "episode", "rip", "address", "value", "size", "flags"]


def write_csv(trace, out):
    """The numeric CSV of `terrapin-trace export` without its `reason` column."""
    out.write(",".join(CSV_COLUMNS) + "\n")
    r = trace.records
    columns = [r[name].tolist() for name in ("timestamp_ns", "duration_ns", "level", "vcpu", "kind_code", "vmx_reason",
                                             "handler", "episode", "rip", "address", "value", "size", "flags")]
    for i, (ts, dur, level, vcpu, kind, vmx, handler, episode, rip, address, value, size, flags) in \
            enumerate(zip(*columns)):
        vmx_text = "-1" if vmx == NO_VMX_REASON else str(vmx)
        out.write(f"{i},{ts},{dur},{level},{vcpu},{kind_name(kind)},{kind},{vmx_text},{handler_name(handler)},"
                  f"{episode},{rip},{address},{value},{size},{flags}\n")


def main(argv):
    args = [a for a in argv if a != "--csv"]
    if len(args) != 1 or any(a.startswith("-") for a in args):
        sys.stderr.write("usage: trace_numpy.py TRACE [--csv]\n")
        return 64
    try:
        trace = load(args[0])
    except (OSError, TraceFormatError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    if "--csv" in argv:
        write_csv(trace, sys.stdout)
        return 0
    r = trace.records
    print(f"trace: {trace.path} (format version {trace.version}, {'finished' if trace.finished else 'unfinished'})")
    for key, value in trace.metadata.items():
        print(f"  {key}: {value}")
    print(f"records: {len(r)}")
    if len(r):
        exits = r[(r["kind_code"] != 15) & (r["kind_code"] != 17)]
        print(f"exits: {len(exits)}, handling time: {int(exits['duration_ns'].sum())} ns in all")
    print("fields: " + ", ".join(f"{n} {RECORD.fields[n][0].str}" for n in RECORD.names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
