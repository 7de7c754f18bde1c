import Testing
@testable import VIOAgent

/// The agent's learned polling window: open while activity comes in short gaps, shut when it
/// is sparse or stops.
struct AdaptivePollTests {
    @Test func requestResponseGapsOpenTheWindow() {
        var poll = AdaptivePoll()
        #expect(poll.learned == 0)
        var t: UInt64 = 1_000_000_000
        poll.activity(at: t)
        for _ in 0..<20 {
            t += 60_000  // a reply 60 µs after its request, again and again
            poll.activity(at: t)
        }
        #expect(poll.learned >= 120_000 && poll.learned <= AdaptivePoll.ceiling, "\(poll.learned)")
        // Back-to-back turns of one burst change nothing.
        let before = poll.learned
        poll.activity(at: t + 500)
        #expect(poll.learned == before)
    }

    @Test func sparseTrafficShutsTheWindow() {
        var poll = AdaptivePoll()
        var t: UInt64 = 1_000_000_000
        for _ in 0..<10 {
            t += 50_000
            poll.activity(at: t)
        }
        #expect(poll.learned > 0)
        // Heartbeats, 100 ms apart: within a few, no polling at all.
        for _ in 0..<6 {
            t += 100_000_000
            poll.activity(at: t)
        }
        #expect(poll.learned == 0)
    }

    @Test func theWindowNeverPassesTheCeiling() {
        var poll = AdaptivePoll()
        var t: UInt64 = 1_000_000_000
        for _ in 0..<50 {
            t += AdaptivePoll.ceiling
            poll.activity(at: t)
        }
        #expect(poll.learned == AdaptivePoll.ceiling)
    }

    /// Traffic at `gap` intervals for `epochs` trial epochs, the gap depending on whether the
    /// agent polls (as closed-loop request/response traffic does).
    static func drive(_ poll: inout AdaptivePoll, from t: inout UInt64, epochs: Int, gap: (Bool) -> UInt64) {
        let end = t + UInt64(epochs) * AdaptivePoll.epoch
        while t < end {
            let polling = poll.window(at: t) > 0
            t += gap(polling)
            poll.activity(at: t)
        }
    }

    /// Polling is kept where it completes more requests, and dropped where it slows them
    /// (the agent's looking takes the cores the instances need).
    @Test func aTrialKeepsPollingOnlyWhereItHelps() {
        var poll = AdaptivePoll()
        var t: UInt64 = 1_000_000_000
        // Polling halves the round trip: it stays on through several cycles.
        Self.drive(&poll, from: &t, epochs: 3 * AdaptivePoll.cycle) { $0 ? 40_000 : 120_000 }
        #expect(poll.pollingHelps && poll.learned > 0)
        // Polling now makes the round trip slower: the next trial turns it off.
        Self.drive(&poll, from: &t, epochs: AdaptivePoll.cycle + 4) { $0 ? 130_000 : 100_000 }
        #expect(!poll.pollingHelps && poll.learned > 0)
        // A fixed rate (the same either way): no reason to spend the CPU.
        Self.drive(&poll, from: &t, epochs: 2 * AdaptivePoll.cycle) { _ in 80_000 }
        #expect(!poll.pollingHelps)
    }
}
