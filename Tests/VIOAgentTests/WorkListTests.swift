import Testing
@testable import VIOAgent

private final class Item: WorkListed {
    let id: Int
    var lists: WorkLists = []
    init(_ id: Int) { self.id = id }
}

@Suite struct WorkListTests {
    @Test func eachItemIsListedOnceInOrder() {
        var list = WorkList<Item>(.ready)
        let a = Item(1), b = Item(2)
        list.insert(a); list.insert(b); list.insert(a)
        #expect(list.items.map(\.id) == [1, 2])
        #expect(list.contains(a) && a.lists == .ready)
    }

    @Test func listsOfOneItemAreIndependent() {
        var ready = WorkList<Item>(.ready), received = WorkList<Item>(.received)
        let a = Item(1)
        ready.insert(a); received.insert(a)
        _ = ready.take()
        #expect(!ready.contains(a) && received.contains(a))
        #expect(received.items.map(\.id) == [1])
    }

    @Test func takeEmptiesTheListAndItemsAddedMeanwhileStartANewOne() {
        var list = WorkList<Item>(.ready)
        let a = Item(1), b = Item(2)
        list.insert(a); list.insert(b)
        let taken = list.take()
        #expect(taken.map(\.id) == [1, 2])
        #expect(list.isEmpty && a.lists.isEmpty && b.lists.isEmpty)
        // Processing `a` puts it back (its budget ran out): it is on the next list, once.
        list.insert(a); list.insert(a)
        list.recycle(taken)
        #expect(list.items.map(\.id) == [1])
        // The recycled storage is reused by the next take.
        let next = list.take()
        #expect(next.map(\.id) == [1])
        list.recycle(next)
        #expect(list.isEmpty)
    }

    @Test func removeTakesOnlyThatItemOff() {
        var list = WorkList<Item>(.dirty)
        let items = (1...4).map(Item.init)
        for item in items { list.insert(item) }
        list.remove(items[1]); list.remove(items[1])
        #expect(list.items.map(\.id) == [1, 3, 4])
        #expect(items[1].lists.isEmpty)
        list.insert(items[1])
        #expect(list.items.map(\.id) == [1, 3, 4, 2])
    }
}

@Suite struct SessionTableTests {
    @Test func findsStoredLinksAndNothingElse() {
        var table = SessionTable<Item>()
        let a = Item(1), b = Item(3)
        table[1, 1] = a; table[2, 3] = b
        #expect(table[1, 1] === a && table[2, 3] === b)
        // The same session id on another peer's channels is another link.
        #expect(table[2, 1] == nil && table[1, 3] == nil && table[1, 0] == nil)
        #expect(table[1, UInt32.max] == nil && table[UInt32.max, UInt32.max] == nil)
        #expect(Set(table.values.map(\.id)) == [1, 3])
        table[1, 1] = nil; table[1, 1] = nil
        #expect(table[1, 1] == nil && table.values.map(\.id) == [3] && table.count == 1)
    }

    /// Against a dictionary, through growth and deletions that shift colliding runs.
    @Test func agreesWithADictionary() {
        var table = SessionTable<Item>()
        var reference: [UInt64: Item] = [:]
        var random = SystemRandomNumberGenerator()
        for step in 0..<20_000 {
            // Few distinct keys, so inserts, overwrites and deletes of present keys all happen.
            let peer = UInt32.random(in: 1...3, using: &random), session = UInt32.random(in: 1...400, using: &random)
            let key = UInt64(peer) << 32 | UInt64(session)
            if step % 3 == 0 {
                table[peer, session] = nil
                reference[key] = nil
            } else {
                let item = Item(Int(session))
                table[peer, session] = item
                reference[key] = item
            }
        }
        #expect(table.count == reference.count)
        for peer in UInt32(1)...3 {
            for session in UInt32(1)...400 {
                #expect(table[peer, session] === reference[UInt64(peer) << 32 | UInt64(session)])
            }
        }
    }
}
