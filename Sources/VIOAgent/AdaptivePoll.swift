/// How long the agent keeps looking for work after activity before it sleeps, learned from
/// the gaps between bursts of activity: request/response traffic (a reply 50 µs after its
/// request) keeps the agent awake across the gap, so neither pays a wake-up; sparse traffic
/// (heartbeats, a request now and then) and idleness shrink the window to nothing, so an idle
/// host costs no CPU. The topology's `agent_poll_us` replaces it with a fixed window.
struct AdaptivePoll {
    /// The longest window: gaps above it are not worth polling across.
    static let ceiling: UInt64 = 200_000
    /// Activity closer than this to the last is the same burst, not a gap.
    static let sameBurst: UInt64 = 2_000

    /// Nanoseconds to keep polling after activity (0: sleep at once).
    private(set) var window: UInt64 = 0
    /// Moving average of recent gaps under the ceiling.
    private var estimate: UInt64 = 0
    private var last: UInt64 = 0

    /// Work arrived at `now` (monotonic nanoseconds).
    mutating func activity(at now: UInt64) {
        let gap = now &- last
        last = now
        guard gap > Self.sameBurst else { return }
        if gap <= Self.ceiling {
            estimate = estimate == 0 ? gap : (estimate * 7 + gap) / 8
            // Twice the usual gap, plus room for a wake-up's worth of jitter.
            window = min(Self.ceiling, estimate * 2 + 10_000)
        } else {
            // Sparse traffic: halve the window each time, down to nothing.
            window /= 2
            if window < 5_000 {
                window = 0
                estimate = 0
            }
        }
    }
}
