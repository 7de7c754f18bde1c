/// An object the agent registers with epoll under a token of its own.
protocol TokenIdentified: AnyObject {
    /// The epoll token it was registered with.
    var token: UInt64 { get }
}

/// Objects found from their epoll token without hashing (the fabric's channels).
///
/// A token carries the object's index in the table in its low bits and a serial above them:
/// an index is reused once its object is gone, and the serial keeps an event that was
/// already collected for the old object (same `epoll_wait` batch) from reaching the new one.
struct TokenTable<Item: TokenIdentified> {
    private var items: [Item?] = []
    private var free: [Int] = []
    private var serial: UInt64 = 0
    /// Bits of a token that hold the index.
    private static var indexBits: Int { 20 }
    private static var indexMask: UInt64 { (1 << indexBits) - 1 }
    /// Bits of a token the table uses (index and serial); the caller's bits go above.
    static var tableBits: Int { 48 }

    /// Adds the object `make` builds with the token it is given: `base` (the caller's flag and
    /// kind bits, none of them below ``tableBits``) with an index and serial added.
    mutating func add(base: UInt64, _ make: (UInt64) -> Item) -> Item {
        precondition(base & ((1 << Self.tableBits) - 1) == 0, "token base bits overlap the table's")
        let index: Int
        if let reused = free.popLast() {
            index = reused
        } else {
            index = items.count
            items.append(nil)
        }
        serial = (serial + 1) & ((1 << (Self.tableBits - Self.indexBits)) - 1)
        let item = make(base | serial << Self.indexBits | UInt64(index))
        items[index] = item
        return item
    }

    /// The object registered with `token`, if it is still in the table.
    subscript(token: UInt64) -> Item? {
        let index = Int(token & Self.indexMask)
        guard index < items.count, let item = items[index], item.token == token else { return nil }
        return item
    }

    /// Takes `item` out; false if it was not in the table.
    mutating func remove(_ item: Item) -> Bool {
        let index = Int(item.token & Self.indexMask)
        guard index < items.count, items[index] === item else { return false }
        items[index] = nil
        free.append(index)
        return true
    }

    /// Every object in the table.
    var values: [Item] { items.compactMap { $0 } }
}
