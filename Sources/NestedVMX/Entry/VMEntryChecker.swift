import VMXArch

/// The checks VMLAUNCH and VMRESUME perform once the launch-state checks
/// have passed (`VMXResult.vmEntry`), in the SDM's order: controls (27.2.1),
/// host state (27.2.2-27.2.4), guest state (27.3.1, with the VMCS link
/// pointer and the PDPTEs), then the MSR-load list (27.4). Within a group
/// the checks run in the order of `checks`, which follows the SDM's text;
/// the first failure decides (the SDM allows any order within a group).
public enum VMEntryChecker {
    /// Every check, in the order they run.
    public static let checks: [EntryCheck] =
        ControlChecks.all + HostStateChecks.all + GuestStateChecks.all + MSRLoadCheck.all

    /// The checks of one group, in order.
    public static func checks(in group: EntryCheckGroup) -> [EntryCheck] { checks.filter { $0.group == group } }

    /// The check called `name`, if there is one.
    public static func check(named name: String) -> EntryCheck? { checks.first { $0.name == name } }

    /// The first failure, or nil if VM entry may proceed.
    public static func check(_ vmcs: VMCS12, capabilities: VMXCapabilities, memory: some GuestMemoryAccess,
                             launch: Bool, platform: EntryPlatform = EntryPlatform()) -> VMEntryFailure? {
        check(EntryContext(vmcs: vmcs, capabilities: capabilities, memory: memory, launch: launch, platform: platform))
    }

    public static func check(_ context: EntryContext) -> VMEntryFailure? {
        for c in checks {
            if case let .fail(q) = c.run(context) { return failure(of: c, qualification: q) }
        }
        return nil
    }

    /// The first failure, as `check(_:)` finds it, re-running only the
    /// checks whose inputs changed since `memo` last saw every check pass
    /// (`EntryCheckMemo`). `memo.evaluated` says how many ran.
    public static func check(_ context: EntryContext, memo: inout EntryCheckMemo) -> VMEntryFailure? {
        let key = EntryCheckMemo.Key(context)
        let values = context.vmcs.values
        let checks = Self.checks
        precondition(checks.count <= FieldSet.capacity)
        // The checks to run, in index order: every one after anything else
        // in the key changed or a failure; else those that read memory
        // and those that read a changed field, found through the memo's
        // inverted index rather than by testing each check's reads (that
        // scan was most of an entry's checks, docs/PERFORMANCE.md).
        var due: FieldSet
        let full: Bool
        if memo.key == key && memo.values.count == values.count && memo.reads.count == checks.count
            && memo.readers.count == FieldSet.capacity {
            var changed = FieldSet(differencesOf: memo.values, values)
            for part in FieldPart.allCases where (memo.values[part.fieldSlot] ^ values[part.fieldSlot]) & part.mask != 0 {
                changed.insert(part.slot)
            }
            due = memo.memoryReaders
            memo.readers.withUnsafeBufferPointer { readers in changed.forEach { due.formUnion(readers[$0]) } }
            full = false
        } else {
            due = .all
            full = true
            memo.reads = [FieldSet](repeating: .all, count: checks.count)
            memo.readsMemory = [Bool](repeating: true, count: checks.count)
        }
        memo.key = nil
        let reads = EntryReads()
        let recording = context.recording(into: reads)
        var evaluated = 0
        var failure: VMEntryFailure?
        run: for w in 0..<FieldSet.words {
            var bits = due.word(w)
            while bits != 0 {
                let i = w * 64 + bits.trailingZeroBitCount
                bits &= bits &- 1
                guard i < checks.count else { break run }
                reads.fields = .empty
                reads.memory = false
                evaluated += 1
                let c = checks[i]
                let result = c.run(recording)
                if !full {
                    // Keep the index equal to the reads (a full run rebuilds it below).
                    memo.reads[i].forEach { memo.readers[$0].remove(i) }
                    reads.fields.forEach { memo.readers[$0].insert(i) }
                    if reads.memory { memo.memoryReaders.insert(i) } else { memo.memoryReaders.remove(i) }
                }
                memo.reads[i] = reads.fields
                memo.readsMemory[i] = reads.memory
                // A failure leaves the memo knowing nothing: the checks after it did not run.
                if case let .fail(q) = result {
                    failure = Self.failure(of: c, qualification: q)
                    break run
                }
            }
        }
        memo.evaluated = evaluated
        if let failure { return failure }
        if full { memo.rebuildIndex() }
        memo.key = key
        memo.values = values
        return nil
    }

    /// Every failing check, in order (for diagnostics: the trace and tests).
    public static func allFailures(_ context: EntryContext) -> [VMEntryFailure] {
        checks.compactMap { c in
            if case let .fail(q) = c.run(context) { return failure(of: c, qualification: q) }
            return nil
        }
    }

    static func failure(of check: EntryCheck, qualification: UInt64) -> VMEntryFailure {
        switch check.group {
        case .controls: .controls(check: check.name)
        case .hostState: .hostState(check: check.name)
        case .guestState: .guestState(check: check.name, qualification: qualification)
        case .msrLoad: .msrLoad(index: Int(qualification))
        }
    }
}
