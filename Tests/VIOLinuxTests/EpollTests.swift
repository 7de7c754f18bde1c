import Testing
import VIOLinux

@Suite struct EpollTests {
    @Test func waitFillsTheReusedBufferWithTheReadyTokens() throws {
        let epoll = try Epoll()
        let a = try EventDescriptor.create(), b = try EventDescriptor.create(), c = try EventDescriptor.create()
        let bells = [a.rawValue, b.rawValue, c.rawValue]
        for (i, bell) in bells.enumerated() { try epoll.add(bell, token: UInt64(100 + i)) }
        var events = Epoll.EventBuffer(capacity: 2)
        try epoll.wait(timeoutMilliseconds: 0, into: &events)
        var count = events.count
        #expect(count == 0)

        EventDescriptor.ring(bells[0])
        EventDescriptor.ring(bells[2])
        try epoll.wait(timeoutMilliseconds: 1000, into: &events)
        let ready = (0..<events.count).map { events[$0] }
        #expect(Set(ready.map(\.token)) == [100, 102])
        #expect(ready.allSatisfy { $0.readable && !$0.hangUp && !$0.writable })

        // More ready than the buffer holds: a wait returns at most its capacity.
        EventDescriptor.ring(bells[1])
        try epoll.wait(timeoutMilliseconds: 1000, into: &events)
        count = events.count
        #expect(count == 2)
        for bell in bells { EventDescriptor.drain(bell) }
        try epoll.wait(timeoutMilliseconds: 0, into: &events)
        let empty = events.isEmpty
        #expect(empty)
    }
}
