/// The fabric's work lists an object can be on, one bit each, kept on the object itself.
struct WorkLists: OptionSet {
    let rawValue: UInt8
    /// A link with more to frame now.
    static let ready = WorkLists(rawValue: 1 << 0)
    /// A link drained and left unarmed while the agent polls.
    static let polled = WorkLists(rawValue: 1 << 1)
    /// A link that took data this turn (credit to grant).
    static let received = WorkLists(rawValue: 1 << 2)
    /// A channel with output to write.
    static let dirty = WorkLists(rawValue: 1 << 3)
    /// A channel with bytes left to read after its budget.
    static let unread = WorkLists(rawValue: 1 << 4)
    /// Links the next tick looks at: deliveries no grant acknowledged yet, or a backlog.
    static let tick = WorkLists(rawValue: 1 << 5)
}

/// An object that can be on the fabric's work lists.
protocol WorkListed: AnyObject {
    /// The lists it is on.
    var lists: WorkLists { get set }
}

/// Objects with one kind of pending work, each at most once, in the order added.
///
/// Membership is a bit on the object, so the per-message path adds and takes without
/// hashing, and the storage is reused from turn to turn.
struct WorkList<Item: WorkListed> {
    let kind: WorkLists
    private(set) var items: [Item] = []
    /// Storage handed out by `take` and returned by `recycle`.
    private var spare: [Item] = []

    init(_ kind: WorkLists) { self.kind = kind }

    var isEmpty: Bool { items.isEmpty }

    /// Adds `item` unless it is already on the list.
    mutating func insert(_ item: Item) {
        guard !item.lists.contains(kind) else { return }
        item.lists.insert(kind)
        items.append(item)
    }

    func contains(_ item: Item) -> Bool { item.lists.contains(kind) }

    /// Takes `item` off the list (a linear search: for teardown, not the data path).
    mutating func remove(_ item: Item) {
        guard item.lists.contains(kind) else { return }
        item.lists.remove(kind)
        items.removeAll { $0 === item }
    }

    /// Empties the list and returns what was on it; items added meanwhile start a new list.
    /// Give the array back with `recycle` to reuse its storage.
    mutating func take() -> [Item] {
        for item in items { item.lists.remove(kind) }
        var taken = spare
        swap(&taken, &items)
        spare = []
        return taken
    }

    /// Returns an array from `take` for reuse.
    mutating func recycle(_ array: consuming [Item]) {
        // Lists hold a few items a turn: popping them costs less than the generic
        // `removeAll(keepingCapacity:)` (a `replaceSubrange`) on the per-message path.
        while array.popLast() != nil {}
        spare = array
    }
}
