import Testing
@testable import VIOAgent

private final class Registered: TokenIdentified {
    let token: UInt64
    init(_ token: UInt64) { self.token = token }
}

/// The fabric's channel table: found by token, indices reused, stale tokens never matching.
@Suite struct TokenTableTests {
    static let base: UInt64 = 1 << 61 | 1 << 56

    @Test func objectsAreFoundByTheirTokenAndCarryTheCallersBits() {
        var table = TokenTable<Registered>()
        let a = table.add(base: Self.base) { Registered($0) }
        let b = table.add(base: Self.base) { Registered($0) }
        #expect(table[a.token] === a && table[b.token] === b)
        #expect(a.token != b.token)
        #expect(a.token & ~((1 << 48) - 1) == Self.base && b.token & ~((1 << 48) - 1) == Self.base)
        #expect(table[Self.base | 12345] == nil)
        #expect(table.values.count == 2)
    }

    @Test func aRemovedObjectsTokenDoesNotFindTheObjectThatReusesItsIndex() {
        var table = TokenTable<Registered>()
        let old = table.add(base: Self.base) { Registered($0) }
        let removed = table.remove(old), again = table.remove(old)
        #expect(removed)
        #expect(!again, "removing twice says it was not there")
        #expect(table[old.token] == nil)
        let new = table.add(base: Self.base) { Registered($0) }
        // Same index (low bits), another serial: an event collected for `old` finds nothing.
        #expect(new.token & 0xFFFFF == old.token & 0xFFFFF)
        #expect(table[old.token] == nil)
        #expect(table[new.token] === new)
        #expect(table.values.count == 1)
    }
}
