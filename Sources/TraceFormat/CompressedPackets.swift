import CDeflate
import Dispatch

/// Perfetto's compressed packets, for the protobuf export (Traces/README.md,
/// "export"): a `TracePacket` whose `compressed_packets` field (50 in
/// trace_packet.proto) holds a zlib stream (RFC 1950: deflate with the zlib
/// header and Adler-32 trailer) of a serialized `Trace`, that is of more
/// `Trace.packet` fields, which the trace processor inflates and reads as if
/// they were in the file, in order, with the sequence state of the packets
/// around them.
///
/// `TextOutput` hands each full buffer (whole packets, about 1 MiB) to
/// `submit`, which swaps in an empty buffer at once and deflates the full
/// one on another thread (igzip level 1, `CDeflate`); the compressed packets
/// are written in submission order on the caller's thread, as later
/// submissions need their buffers back or at `drain`. At most `depth`
/// buffers are in flight, so memory stays bounded. A buffer that does not
/// deflate is written as it is: its packets are valid uncompressed.
final class PacketCompressor {
    /// One buffer's trip: its packets, then the framed compressed packet.
    final class Job: @unchecked Sendable {
        var input: UnsafeMutablePointer<UInt8>
        var count = 0
        let output: UnsafeMutablePointer<UInt8>
        let outputCapacity: Int
        /// The framed packet is output[start ..< start + size]; size 0: write the input as it is.
        var start = 0
        var size = 0
        let context: OpaquePointer?
        let done = DispatchSemaphore(value: 0)

        /// Room before the zlib stream for the two tags and two lengths of the framing.
        static let headroom = 16

        init(capacity: Int) {
            input = .allocate(capacity: capacity)
            outputCapacity = Job.headroom + capacity + capacity / 16 + 1024
            output = .allocate(capacity: outputCapacity)
            context = cdeflate_new()
        }

        deinit {
            input.deallocate()
            output.deallocate()
            cdeflate_free(context)
        }

        /// Deflates the input and frames it as
        /// `Trace.packet { compressed_packets: <zlib stream> }`.
        func compress() {
            let body = output + Job.headroom
            let n = context == nil ? 0
                : cdeflate_zlib(context, input, count, body, outputCapacity - Job.headroom)
            size = 0
            if n > 0 {
                let inner = 2 + varintSize(UInt64(n)) + n          // tag 50/LEN, length, stream
                start = Job.headroom - (1 + varintSize(UInt64(inner)) + 2 + varintSize(UInt64(n)))
                var w = ProtoWire(p: output + start)
                w.varint(PerfettoProtoExport.F.tracePacket << 3 | 2)
                w.varint(UInt64(inner))
                w.varint(PerfettoProtoExport.F.compressedPackets << 3 | 2)
                w.varint(UInt64(n))
                size = Job.headroom - start + n
            }
            done.signal()
        }
    }

    /// Buffers in flight at most.
    static let depth = 4
    let capacity: Int
    private var free: [Job] = []
    private var inFlight: [Job] = []   // oldest first

    /// For buffers of `capacity` bytes.
    init(capacity: Int) { self.capacity = capacity }

    deinit {
        for job in inFlight { job.done.wait() }
    }

    /// Takes the `count` bytes of packets in `buffer` (of `capacity` bytes)
    /// and returns an empty buffer of the same size in its place; writes
    /// finished compressed packets with `write` as it needs their buffers.
    func submit(_ buffer: UnsafeMutablePointer<UInt8>, count: Int,
                write: (UnsafeRawPointer, Int) -> Void) -> UnsafeMutablePointer<UInt8> {
        let job: Job
        if let j = free.popLast() {
            job = j
        } else if inFlight.count < PacketCompressor.depth {
            job = Job(capacity: capacity)
        } else {
            job = retireOldest(write)
        }
        let empty = job.input
        job.input = buffer
        job.count = count
        inFlight.append(job)
        DispatchQueue.global().async { job.compress() }
        return empty
    }

    /// Writes every packet still in flight, in order.
    func drain(write: (UnsafeRawPointer, Int) -> Void) {
        while !inFlight.isEmpty { free.append(retireOldest(write)) }
    }

    private func retireOldest(_ write: (UnsafeRawPointer, Int) -> Void) -> Job {
        let job = inFlight.removeFirst()
        job.done.wait()
        if job.size > 0 {
            write(job.output + job.start, job.size)
        } else {
            write(job.input, job.count)
        }
        return job
    }
}

/// Bytes of `v` as a protobuf varint.
@inline(__always)
func varintSize(_ v: UInt64) -> Int { max(1, (64 - v.leadingZeroBitCount + 6) / 7) }
