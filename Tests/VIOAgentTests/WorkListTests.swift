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
        var table = SessionTable<Item>(largest: 4)
        let a = Item(1), b = Item(3)
        table[1] = a; table[3] = b
        #expect(table[1] === a && table[3] === b)
        #expect(table[0] == nil && table[2] == nil && table[4] == nil)
        // Ids from the network beyond the table find nothing (no trap).
        #expect(table[5] == nil && table[UInt32.max] == nil)
        #expect(table.values.map(\.id) == [1, 3])
        table[1] = nil; table[1] = nil
        #expect(table[1] == nil && table.values.map(\.id) == [3])
    }

    @Test func growsForALargerSession() {
        var table = SessionTable<Item>(largest: 1)
        let a = Item(9)
        table[9] = a
        #expect(table[9] === a && table.values.count == 1)
        table[20] = nil
        #expect(table[20] == nil && table.values.count == 1)
    }
}
