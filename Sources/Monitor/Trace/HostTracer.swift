#if canImport(Glibc)
import Glibc
#endif

/// `terrapin run --host-trace FILE`: KVM's own trace events of the run,
/// captured through tracefs and written as the text `terrapin-trace align`
/// reads (Traces/README.md, "Lining up with host traces").
///
/// It works in a tracefs instance of its own (`instances/terrapin-PID`, a
/// separate ring buffer, so other users of tracefs are not disturbed) on the
/// `mono` trace clock (CLOCK_MONOTONIC, the clock of `monotonic_base_ns`),
/// with the kvm events `align` uses enabled. Tracing is on from `start()`
/// to `finish()`, which copies the instance's `trace` file (`COMM-TID [CPU]
/// FLAGS SECONDS: EVENT: FIELDS`, µs resolution) to FILE and removes the
/// instance. The Linux kernel's Documentation/trace/ftrace.rst describes the
/// files.
public final class HostTracer {
    /// The events `align` reads: exits, entries, exits to userspace, and the
    /// operations that the kvm_pvm backend traces instead of kvm_exit.
    public static let events = ["kvm_exit", "kvm_entry", "kvm_userspace_exit", "kvm_cpuid", "kvm_cr", "kvm_msr",
                                "kvm_pio", "kvm_mmio", "kvm_hypercall"]
    /// Ring buffer per CPU, in KiB: room for about a million events.
    public static let bufferKiB = 32768

    public let output: String
    public let instance: String
    public private(set) var enabled: [String] = []
    private var removed = false

    /// Where tracefs is: `override` (the TERRAPIN_TRACEFS environment
    /// variable), else /sys/kernel/tracing, else /sys/kernel/debug/tracing,
    /// whichever has an `instances` directory.
    public static func root(override: String?) throws(MonitorError) -> String {
        let candidates = override.map { [$0] } ?? ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        for c in candidates where access(c + "/instances", F_OK) == 0 { return c }
        throw .io("--host-trace: tracefs is not available at \(candidates.joined(separator: " or ")) "
                  + "(mount it with: mount -t tracefs nodev /sys/kernel/tracing)", errno: ENOENT)
    }

    /// Creates FILE (so a bad path fails before the run), then the instance
    /// with tracing off, the mono clock, its buffer and the events.
    public init(output: String, root: String) throws(MonitorError) {
        self.output = output
        let fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw .io("--host-trace: cannot create \(output): \(String(cString: strerror(errno)))", errno: errno)
        }
        close(fd)
        instance = root + "/instances/terrapin-\(getpid())"
        if mkdir(instance, 0o755) != 0 {
            let e = errno
            if e == EEXIST, rmdir(instance) == 0, mkdir(instance, 0o755) == 0 {
                // A stale instance of an earlier process with this pid, replaced.
            } else {
                throw .io("--host-trace: tracefs at \(root) is not writable (mkdir \(instance): "
                          + "\(String(cString: strerror(e)))); it needs root or write access to tracefs", errno: e)
            }
        }
        do throws(MonitorError) {
            try write("tracing_on", "0")
            try write("trace_clock", "mono")
            try write("buffer_size_kb", String(Self.bufferKiB))
            for name in Self.events where access(instance + "/events/kvm/\(name)/enable", W_OK) == 0 {
                try write("events/kvm/\(name)/enable", "1")
                enabled.append(name)
            }
            guard !enabled.isEmpty else {
                throw .io("--host-trace: tracefs at \(root) has no kvm events (is the kvm module loaded?)",
                                      errno: ENOENT)
            }
        } catch {
            remove()
            throw error
        }
    }

    deinit { remove() }

    /// Turns tracing on: call it just before the run.
    public func start() throws(MonitorError) { try write("tracing_on", "1") }

    /// Turns tracing off, copies the events to FILE and removes the
    /// instance. Returns the events the ring buffer lost (overrun), which
    /// the caller reports.
    @discardableResult
    public func finish() throws(MonitorError) -> UInt64 {
        defer { remove() }
        try write("tracing_on", "0")
        let lost = overrun()
        let source = open(instance + "/trace", O_RDONLY | O_CLOEXEC)
        guard source >= 0 else {
            throw .io("--host-trace: cannot read \(instance)/trace: \(String(cString: strerror(errno)))", errno: errno)
        }
        defer { close(source) }
        let target = open(output, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard target >= 0 else {
            throw .io("--host-trace: cannot write \(output): \(String(cString: strerror(errno)))", errno: errno)
        }
        defer { close(target) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(source, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw .io("--host-trace: reading \(instance)/trace: \(String(cString: strerror(errno)))", errno: errno)
            }
            if n == 0 { break }
            var done = 0
            while done < n {
                let w = buffer.withUnsafeBytes { Glibc.write(target, $0.baseAddress! + done, n - done) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else {
                    throw .io("--host-trace: writing \(output): \(String(cString: strerror(errno)))", errno: errno)
                }
                done += w
            }
        }
        return lost
    }

    /// The sum of the "overrun:" lines of every CPU's stats file.
    private func overrun() -> UInt64 {
        var total: UInt64 = 0
        for cpu in 0..<Int(sysconf(Int32(_SC_NPROCESSORS_CONF))) {
            guard let text = Self.read(instance + "/per_cpu/cpu\(cpu)/stats") else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix("overrun:") {
                total += UInt64(line.dropFirst("overrun:".count).trimmingCharacters(in: " ")) ?? 0
            }
        }
        return total
    }

    private func write(_ file: String, _ value: String) throws(MonitorError) {
        let path = instance + "/" + file
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else {
            throw .io("--host-trace: cannot open \(path): \(String(cString: strerror(errno)))", errno: errno)
        }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
        guard n == bytes.count else {
            throw .io("--host-trace: cannot write '\(value)' to \(path): \(String(cString: strerror(errno)))", errno: errno)
        }
    }

    private static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
    }

    /// Removes the instance (tracing off first); once.
    private func remove() {
        guard !removed else { return }
        removed = true
        try? write("tracing_on", "0")
        rmdir(instance)
    }
}

private extension Substring {
    func trimmingCharacters(in set: Character) -> Substring {
        var s = self
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return s
    }
}
