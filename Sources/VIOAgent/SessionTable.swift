/// The fabric's open cross-host links by session id (generic only so tests can use any class).
///
/// Session ids are topology positions (1...links), so a table indexed by id finds the link
/// of every arriving frame without hashing; an id from the network outside the table simply
/// finds nothing.
struct SessionTable<Link: AnyObject> {
    private var slots: [Link?]

    /// A table for session ids up to `largest` (it grows if a larger one is stored).
    init(largest: Int) {
        slots = Array(repeating: nil, count: max(0, largest) + 1)
    }

    /// The link with session id `session`, if open here.
    subscript(session: UInt32) -> Link? {
        get {
            let index = Int(session)
            return index < slots.count ? slots[index] : nil
        }
        set {
            let index = Int(session)
            if index >= slots.count {
                guard newValue != nil else { return }
                slots += Array(repeating: nil, count: index + 1 - slots.count)
            }
            slots[index] = newValue
        }
    }

    /// Every link in the table, by session id.
    var values: [Link] { slots.compactMap { $0 } }
}
