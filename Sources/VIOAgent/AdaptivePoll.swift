/// How long the agent keeps looking for work after activity before it sleeps, learned from
/// the traffic. Two things are learned:
///
/// - **The window**, from the gaps between bursts of activity: request/response traffic (a
///   reply 50 µs after its request) keeps the agent awake across the gap, so neither pays a
///   wake-up; sparse traffic (heartbeats, a request now and then) and idleness shrink it to
///   nothing, so an idle host costs no CPU.
/// - **Whether polling helps at all**, by trying: now and then one epoch polls and one sleeps,
///   and the agent keeps whichever saw more bursts of work (closed-loop request/response
///   traffic completes more requests when each is faster). Polling loses where the agent's
///   looking takes the cores from the instances it waits for (instances that spin, more busy
///   threads than cores): the agent then sleeps until the next trial, as if `agent_poll_us`
///   were 0. Traffic that comes at a fixed rate completes as many bursts either way, and then
///   the agent sleeps too: polling would only cost CPU.
///
/// The topology's `agent_poll_us` replaces all of it with a fixed window.
struct AdaptivePoll {
    /// The longest window: gaps above it are not worth polling across.
    static let ceiling: UInt64 = 200_000
    /// Activity closer than this to the last is the same burst, not a gap.
    static let sameBurst: UInt64 = 2_000
    /// One epoch of the polling trial.
    static let epoch: UInt64 = 25_000_000
    /// Epochs per trial cycle: the last two are the trial (one polling, one sleeping), the
    /// rest follow its outcome.
    static let cycle = 20
    /// Polling must complete this much more work (in 1/16ths above the sleeping epoch's) to be
    /// kept: a tie means it only costs CPU.
    static let margin: Int = 2

    /// Nanoseconds to keep polling after activity, as learned from the gaps (0: sleep at once).
    private(set) var learned: UInt64 = 0
    /// Whether the last trial found that polling completes more work.
    private(set) var pollingHelps = true
    /// Moving average of recent gaps under the ceiling.
    private var estimate: UInt64 = 0
    private var last: UInt64 = 0
    /// The current epoch: when it ends, its number in the cycle and the bursts seen in it.
    private var epochEnds: UInt64 = 0
    private var epochIndex = 0
    private var bursts = 0
    /// Bursts of the trial's polling epoch.
    private var pollingBursts = 0

    /// The window to use at `now`.
    mutating func window(at now: UInt64) -> UInt64 {
        if now >= epochEnds { endEpoch(at: now) }
        switch epochIndex {
        case Self.cycle - 2: return learned                       // trial: polling
        case Self.cycle - 1: return 0                             // trial: sleeping
        default: return pollingHelps ? learned : 0
        }
    }

    private mutating func endEpoch(at now: UInt64) {
        // An epoch that ran long (an idle agent asleep) is restarted, not judged.
        let stale = epochEnds == 0 || now - epochEnds > Self.epoch
        if !stale {
            if epochIndex == Self.cycle - 2 {
                pollingBursts = bursts
            } else if epochIndex == Self.cycle - 1 {
                pollingHelps = pollingBursts * 16 > bursts * (16 + Self.margin)
            }
        }
        epochIndex = stale ? 0 : (epochIndex + 1) % Self.cycle
        if learned == 0 {
            // With nothing learned there is nothing to try: the trial comes first once the
            // window opens, so new traffic is judged within two epochs.
            epochIndex = Self.cycle - 3
        }
        epochEnds = now &+ Self.epoch
        bursts = 0
    }

    /// Work arrived at `now` (monotonic nanoseconds).
    mutating func activity(at now: UInt64) {
        let gap = now &- last
        last = now
        guard gap > Self.sameBurst else { return }
        bursts &+= 1
        if gap <= Self.ceiling {
            estimate = estimate == 0 ? gap : (estimate * 7 + gap) / 8
            // Twice the usual gap, plus room for a wake-up's worth of jitter.
            learned = min(Self.ceiling, estimate * 2 + 10_000)
        } else {
            // Sparse traffic: halve the window each time, down to nothing.
            learned /= 2
            if learned < 5_000 {
                learned = 0
                estimate = 0
            }
        }
    }
}
