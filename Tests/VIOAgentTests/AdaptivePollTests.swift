import Testing
@testable import VIOAgent

/// The agent's learned polling window: open while activity comes in short gaps, shut when it
/// is sparse or stops.
struct AdaptivePollTests {
    @Test func requestResponseGapsOpenTheWindow() {
        var poll = AdaptivePoll()
        #expect(poll.window == 0)
        var t: UInt64 = 1_000_000_000
        poll.activity(at: t)
        for _ in 0..<20 {
            t += 60_000  // a reply 60 µs after its request, again and again
            poll.activity(at: t)
        }
        #expect(poll.window >= 120_000 && poll.window <= AdaptivePoll.ceiling, "\(poll.window)")
        // Back-to-back turns of one burst change nothing.
        let before = poll.window
        poll.activity(at: t + 500)
        #expect(poll.window == before)
    }

    @Test func sparseTrafficShutsTheWindow() {
        var poll = AdaptivePoll()
        var t: UInt64 = 1_000_000_000
        for _ in 0..<10 {
            t += 50_000
            poll.activity(at: t)
        }
        #expect(poll.window > 0)
        // Heartbeats, 100 ms apart: within a few, no polling at all.
        for _ in 0..<6 {
            t += 100_000_000
            poll.activity(at: t)
        }
        #expect(poll.window == 0)
    }

    @Test func theWindowNeverPassesTheCeiling() {
        var poll = AdaptivePoll()
        var t: UInt64 = 1_000_000_000
        for _ in 0..<50 {
            t += AdaptivePoll.ceiling
            poll.activity(at: t)
        }
        #expect(poll.window == AdaptivePoll.ceiling)
    }
}
