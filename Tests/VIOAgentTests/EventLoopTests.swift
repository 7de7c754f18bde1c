import Testing
import VIOLinux
@testable import VIOAgent

/// The one way anything goes on the agent's loop, and the typed link ids.
struct EventLoopTests {
    @Test func eventsReachTheirHandlerUntilUnregistered() throws {
        let loop = try EventLoop()
        let a = try EventDescriptor.create(), b = try EventDescriptor.create()
        var seen: [String] = []
        let ra = try loop.register(a.rawValue) { _ in seen.append("a") }
        try loop.register(b.rawValue) { _ in seen.append("b") }
        EventDescriptor.ring(a.rawValue)
        EventDescriptor.ring(b.rawValue)
        var events = Epoll.EventBuffer(capacity: 8)
        try loop.epoll.wait(timeoutMilliseconds: 100, into: &events)
        #expect(events.count == 2)
        // Unregistered between collecting the events and handling them: its event is dropped,
        // even when a new registration reuses its slot at once.
        loop.unregister(ra)
        let c = try EventDescriptor.create()
        try loop.register(c.rawValue) { _ in seen.append("c") }
        for i in 0..<events.count { loop.dispatch(events[i]) }
        #expect(seen == ["b"])
    }

    @Test func linkIDsSayWhereTheLinkRuns() {
        #expect(LinkID.first(.local).kind == .local)
        #expect(LinkID.first(.remote).kind == .remote)
        #expect(LinkID.first(.local).next.rawValue == 2)
        #expect(LinkID(rawValue: LinkID.first(.remote).rawValue - 1).kind == .local)
    }
}
