import KVM
import NestedVMX
import TraceFormat

extension Machine {
    /// Runs the guest until it ends. Returns the outcome; throws only when
    /// KVM itself fails. Prints a register dump for abnormal ends.
    public func run() throws(MonitorError) -> RunOutcome {
        try start()
        var outcome: RunOutcome?
        while outcome == nil { outcome = try step() }
        hostTimer = nil
        serialSink.flush()
        if case let .stopped(signal)? = outcome {
            // The trace says why it ends here (Traces/README.md, kind 17).
            trace?.append(TraceRecord(timestamp: clock.now() &- runStart, duration: 0, level: UInt8(activeLevel), kind: .stopped,
                                      vcpu: UInt16(truncatingIfNeeded: vcpu.id), address: UInt64(signal)))
        }
        do {
            if let trace, let n = workReport.iterations {
                try trace.patchMetadata(TraceMetadata.iterationsKey, TraceMetadata.padded(n, width: TraceMetadata.iterationsWidth))
            }
            try trace?.finish()
        } catch {
            // The trace error decides the status (70); the guest's outcome is still said.
            printError("terrapin: \(outcome?.description ?? "no outcome") before the trace failed")
            throw .io("trace: \(error)", errno: 0)
        }
        trace = nil
        let result = outcome ?? .unhandledExit("no outcome")
        switch result {
        case .guestExit: break
        case .stopped: printError("terrapin: \(result.description)")
        default:
            printError("terrapin: \(result.description)\n\(RegisterDump.text(of: vcpu))")
        }
        return result
    }

    /// Before the first step: the host timer that kicks L1's vCPU, and the
    /// trace's time zero.
    func start() throws(MonitorError) {
        do {
            hostTimer = HostTimer(kicker: try vcpu.makeKicker())
            try StopRequest.installHandlers()
        } catch { throw MonitorError(error) }
        runStart = clock.now()
        if let trace {
            do throws(TraceError) { try TraceRecorder.startClock(trace, runStart: runStart) } catch {
                throw .io("trace: \(error)", errno: 0)
            }
        }
    }

    /// One exit: runs the active level's vCPU once, or takes the L2 exit that
    /// is due without running it, and handles what came back. Returns the
    /// outcome when the run is over.
    func step() throws(MonitorError) -> RunOutcome? {
        if let signal = StopRequest.signal { return .stopped(signal: signal) }
        let level = activeLevel
        let exit: VCPUExit
        switch running {
        case .l1:
            do { try prepareEntry() } catch { throw MonitorError(error) }
            do { exit = try vcpu.runOnce() } catch { throw MonitorError(error) }
        case let .l2(l2):
            let step = nextL2Step(l2)
            if step != .run && step != .runToHandler, let vmcs = vmx.current {
                // An exit is due before L2 runs again: a timer expired, or L1 has an interrupt.
                return traced(level: level, kind: .interrupted) { takeL2Step(step, l2: l2, vmcs: vmcs, note: &$0) }
            }
            do {
                try refreshL2Breakpoints(l2)
                exit = try runL2(l2)
            } catch where error.noMemorySlot {
                // The L2 VM has no memory slot at all yet (an EPT12 that maps
                // nothing L2 touched): KVM cannot start it. That is L2's first
                // fetch missing EPT02, handled as such below.
                exit = .internalError(InternalErrorExit(suberror: InternalErrorExit.emulation))
            } catch where error.invalidState {
                // KVM refused the state L1 loaded (a combination the entry
                // checks let through): a VM-entry failure, never a crash.
                var note = ExitNote(kind: .failEntry)
                note.level = 2
                let outcome = failEntry(.guestState(check: "KVM refused L2's state (KVM_RUN: EINVAL)", qualification: 0),
                                        l1: cpuState, note: &note)
                running = .l1
                if trace != nil { record(note, at: clock.now(), duration: 0) }
                return outcome
            } catch { throw MonitorError(error) }
        }
        return traced(level: level) { handle(exit, note: &$0) }
    }

    /// Before each KVM_RUN: expire the APIC timer, inject a deliverable
    /// interrupt if the guest can take one or ask for an interrupt window,
    /// and arm the host timer for a deadline still ahead.
    @inline(__always)
    func prepareEntry() throws(KVMError) {
        try refreshBreakpoints()
        if let deadline = apic.timerDeadline {
            let now = clock.now()
            if deadline <= now { apic.updateTimer(at: now) }
            if let next = apic.timerDeadline { hostTimer?.arm(deadline: next, now: now) } else { hostTimer?.disarm() }
        }
        guard let vector = apic.deliverableVector else {
            if vcpu.requestInterruptWindow { vcpu.requestInterruptWindow = false }
            try l1Breakpoints.stepForInterruptWindow(false)
            return
        }
        // KVM's flag misses the STI shadow after a single step on this
        // backend (measured 2026-12-06: an interrupt injected between STI
        // and HLT): the shadow from the vCPU's events decides as well.
        if vcpu.readyForInterruptInjection && vcpu.events.shadow.isEmpty {
            try vcpu.injectInterrupt(vector)
            apic.acknowledge(vector)
            vcpu.requestInterruptWindow = false
            try l1Breakpoints.stepForInterruptWindow(false)
            if trace != nil {
                var note = ExitNote(kind: .interruptInjected)
                note.value = UInt64(vector)
                record(note, at: clock.now(), duration: 0)
            }
        } else {
            // KVM's window exit comes only at an exit of its own: L0 steps
            // L1 so that it sees the window open where the SDM does. Not
            // over a HLT: a step over it (measured 2026-12-06) reports the
            // step first and the HLT only after the next injection, inside
            // the handler. The HLT's own exit is the window then.
            vcpu.requestInterruptWindow = true
            let cpu = cpuState
            let atHLT = InstructionFetch.bytes(at: cpu.cs.base &+ cpu.rip, cpu: cpu, memory: ram).first == 0xf4
            try l1Breakpoints.stepForInterruptWindow(!atHLT)
        }
    }

    /// Runs one exit's handling and, when tracing, records it with the time
    /// it took. Exits of L1 carry the episode they belong to.
    @inline(__always)
    private func traced(level: Int, kind: ExitKind = .unknownExit, _ body: (inout ExitNote) -> RunOutcome?) -> RunOutcome? {
        var note = ExitNote(kind: kind)
        guard trace != nil else { return body(&note) }
        let t0 = clock.now()
        note.level = UInt8(level)
        if level == 1 { note.episode = currentEpisode }
        let outcome = body(&note)
        record(note, at: t0, duration: clock.now() &- t0)
        return outcome
    }

    @inline(__always)
    private func record(_ note: ExitNote, at time: UInt64, duration: UInt64) {
        let rip = note.level == 2 ? (l2Machine?.vcpu.registers.rip ?? 0) : vcpu.registers.rip
        trace?.append(TraceRecord(timestamp: time &- runStart, duration: TraceRecord.clampDuration(duration), level: note.level,
                                  kind: note.kind, vcpu: UInt16(truncatingIfNeeded: vcpu.id), rip: rip,
                                  address: note.address, value: note.value, episode: note.episode, vmxReason: note.vmxReason,
                                  handler: note.handler, size: note.size, flags: note.flags))
    }
}

/// What one exit was, for its trace record; filled in by the handler.
public struct ExitNote: Equatable, Sendable {
    public var kind: ExitKind = .unknownExit
    public var address: UInt64 = 0
    public var value: UInt64 = 0
    public var size: UInt8 = 0
    public var flags: RecordFlags = []
    public var vmxReason: UInt32 = TraceRecord.noVMXReason
    public var level: UInt8 = 1
    public var handler: Handler = .l0
    public var episode: UInt64 = 0
    public init(kind: ExitKind = .unknownExit) { self.kind = kind }
}
