/// The fabric's open cross-host links, by peer host and session id (generic only so tests can
/// use any class).
///
/// Session ids are hashes of the links' names (``FabricIdentifiers``), so they are sparse:
/// an open-addressing table (linear probing, backward-shift deletion) finds the link of every
/// arriving frame with one multiply and usually one probe, and never allocates on lookup. An id
/// from the network that names nothing simply finds nothing.
struct SessionTable<Link: AnyObject> {
    private var keys: [UInt64]
    private var slots: [Link?]
    private var shift: UInt64
    private(set) var count = 0

    /// A table sized for about `expected` links (it grows as needed).
    init(expected: Int = 0) {
        var capacity = 16
        while capacity < max(0, expected) * 2 { capacity *= 2 }
        keys = Array(repeating: 0, count: capacity)
        slots = Array(repeating: nil, count: capacity)
        shift = UInt64(64 - capacity.trailingZeroBitCount)
    }

    /// Peer number in the high half, session in the low half; 0 never names a link (session
    /// ids are never 0), so it marks an empty slot.
    @inline(__always)
    private static func key(_ peer: UInt32, _ session: UInt32) -> UInt64 { UInt64(peer) << 32 | UInt64(session) }

    @inline(__always)
    private func home(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// The link `session` names on the channels to peer number `peer`, if open here.
    subscript(peer: UInt32, session: UInt32) -> Link? {
        get {
            let key = Self.key(peer, session)
            guard session != 0 else { return nil }
            let mask = keys.count - 1
            var i = home(key)
            while true {
                let k = keys[i]
                if k == key { return slots[i] }
                if k == 0 { return nil }
                i = (i + 1) & mask
            }
        }
        set {
            let key = Self.key(peer, session)
            precondition(session != 0, "session 0 names no link")
            if let newValue { insert(key, newValue) } else { remove(key) }
        }
    }

    /// Every link in the table (in no particular order).
    var values: [Link] { slots.compactMap { $0 } }

    private mutating func insert(_ key: UInt64, _ link: Link) {
        if (count + 1) * 2 > keys.count { grow() }
        let mask = keys.count - 1
        var i = home(key)
        while keys[i] != 0 && keys[i] != key { i = (i + 1) & mask }
        if keys[i] == 0 { count += 1 }
        keys[i] = key
        slots[i] = link
    }

    private mutating func remove(_ key: UInt64) {
        let mask = keys.count - 1
        var i = home(key)
        while keys[i] != key {
            if keys[i] == 0 { return }
            i = (i + 1) & mask
        }
        count -= 1
        // Backward shift: move later entries of the same run into the hole, so lookups never
        // need tombstones.
        var hole = i
        var j = (i + 1) & mask
        while keys[j] != 0 {
            let wanted = home(keys[j])
            // Entry j may fill the hole when its home is not cyclically in (hole, j].
            let fits = hole <= j ? (wanted <= hole || wanted > j) : (wanted <= hole && wanted > j)
            if fits {
                keys[hole] = keys[j]
                slots[hole] = slots[j]
                hole = j
            }
            j = (j + 1) & mask
        }
        keys[hole] = 0
        slots[hole] = nil
    }

    private mutating func grow() {
        let old = zip(keys, slots).filter { $0.0 != 0 }
        let capacity = keys.count * 2
        keys = Array(repeating: 0, count: capacity)
        slots = Array(repeating: nil, count: capacity)
        shift = UInt64(64 - capacity.trailingZeroBitCount)
        count = 0
        for (key, link) in old { insert(key, link!) }
    }
}
