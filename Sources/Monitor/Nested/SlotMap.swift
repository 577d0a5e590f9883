/// The EPT02 memory slots of the L2 VM: sorted by L2-physical base and
/// never overlapping, so lookups are binary searches, with KVM slot ids
/// reused (KVM has 32764 of them). EPT02 is a cache of EPT12, so when the
/// map is full the oldest runs are evicted and rebuilt on L2's next touch.
struct SlotMap {
    struct Slot: Equatable {
        var id: UInt32
        var base: UInt64
        var size: UInt64
        /// Offset of the run in L1's RAM.
        var l1: UInt64
        var readOnly: Bool
        /// When it was built: eviction takes the oldest first.
        var built: UInt64 = 0
        var end: UInt64 { base &+ size }
    }

    /// How many slots KVM gives the L2 VM, less a margin.
    let capacity: Int
    private(set) var slots: [Slot] = []
    private var freeIDs: [UInt32] = []
    private var nextID: UInt32 = 0
    private var clock: UInt64 = 0

    init(capacity: Int) { self.capacity = max(1, capacity) }

    var count: Int { slots.count }
    var isFull: Bool { slots.count >= capacity }

    /// The index of the first slot whose base is above `address`.
    private func firstAbove(_ address: UInt64) -> Int {
        var lo = 0, hi = slots.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if slots[mid].base <= address { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func slot(containing address: UInt64) -> Slot? {
        let i = firstAbove(address)
        guard i > 0, address < slots[i - 1].end else { return nil }
        return slots[i - 1]
    }

    /// The free interval around `address`, which no slot holds: from the end
    /// of the nearest slot below (or 0) to the base of the nearest above.
    func gap(around address: UInt64) -> (floor: UInt64, limit: UInt64) {
        let i = firstAbove(address)
        return (i > 0 ? slots[i - 1].end : 0, i < slots.count ? slots[i].base : .max)
    }

    /// A KVM slot id for a new slot: a freed one first.
    mutating func takeID() -> UInt32 {
        if let id = freeIDs.popLast() { return id }
        defer { nextID += 1 }
        return nextID
    }

    /// Gives back an id from `takeID` that no slot got (KVM refused the map).
    mutating func giveBack(_ id: UInt32) { freeIDs.append(id) }

    /// Records a slot built with an id from `takeID`; it must not overlap one.
    mutating func insert(_ slot: Slot) {
        var s = slot
        clock += 1
        s.built = clock
        slots.insert(s, at: firstAbove(s.base))
    }

    /// Forgets `slot`; its id can be used again. Found by its base (slots
    /// never overlap), so evicting a quarter of a full map stays O(N log N).
    mutating func remove(_ slot: Slot) {
        let i = firstAbove(slot.base) - 1
        guard i >= 0, slots[i].id == slot.id else { return }
        slots.remove(at: i)
        freeIDs.append(slot.id)
    }

    /// The oldest quarter of the slots, to evict when the map is full.
    func oldest() -> [Slot] {
        Array(slots.sorted { $0.built < $1.built }.prefix(max(1, slots.count / 4)))
    }

    mutating func removeAll() {
        slots.removeAll()
        freeIDs.removeAll()
        nextID = 0
    }
}
