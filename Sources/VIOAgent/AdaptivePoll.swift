/// How long the agent keeps looking for work after activity before it sleeps, learned from
/// the traffic. Two things are learned:
///
/// - **The window**, from the gaps between bursts of activity: request/response traffic (a
///   reply 50 µs after its request) keeps the agent awake across the gap, so neither pays a
///   wake-up; sparse traffic (heartbeats, a request now and then) and idleness shrink it to
///   nothing, so an idle host costs no CPU.
/// - **Whether polling helps at all**, by trying: now and then two epochs poll and two sleep,
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
    /// Epochs per trial cycle: the last four are the trial (polling, sleeping, sleeping,
    /// polling: a drift in the traffic during the trial falls on both sides), the rest follow
    /// its outcome.
    static let cycle = 24
    /// The trial's epochs, by their place in the cycle: whether each polls.
    static func trialPolls(_ index: Int) -> Bool? {
        switch index - (cycle - 4) {
        case 0, 3: true
        case 1, 2: false
        default: nil
        }
    }
    /// Polling must complete this much more work (in 1/16ths above the sleeping epochs') to be
    /// kept: a tie means it only costs CPU, and a small edge is within what the other agents'
    /// own choices move (they try too).
    static let margin: Int = 4

    /// Nanoseconds to keep polling after activity, as learned from the gaps (0: sleep at once).
    private(set) var learned: UInt64 = 0
    /// Whether the last trial found that polling completes more work.
    private(set) var pollingHelps = true
    /// Trials decided so far, and the last one's bursts (polling, sleeping): for the log.
    private(set) var trials = 0
    private(set) var lastTrial = (polling: 0, sleeping: 0)
    /// Moving average of recent gaps under the ceiling.
    private var estimate: UInt64 = 0
    private var last: UInt64 = 0
    /// The current epoch: when it ends, its number in the cycle and the bursts seen in it.
    private var epochEnds: UInt64 = 0
    private var epochIndex = 0
    private var bursts = 0
    /// Bursts of the trial's polling and sleeping epochs so far.
    private var pollingBursts = 0
    private var sleepingBursts = 0

    /// The window to use at `now`.
    mutating func window(at now: UInt64) -> UInt64 {
        if now >= epochEnds { endEpoch(at: now) }
        switch Self.trialPolls(epochIndex) {
        case true?: return learned
        case false?: return 0
        case nil: return pollingHelps ? learned : 0
        }
    }

    private mutating func endEpoch(at now: UInt64) {
        // An epoch that ran long (an idle agent asleep) is restarted, not judged.
        let stale = epochEnds == 0 || now - epochEnds > Self.epoch
        if !stale, let polled = Self.trialPolls(epochIndex) {
            if polled { pollingBursts += bursts } else { sleepingBursts += bursts }
            if epochIndex == Self.cycle - 1 {
                pollingHelps = pollingBursts * 16 > sleepingBursts * (16 + Self.margin)
                trials &+= 1
                lastTrial = (pollingBursts, sleepingBursts)
            }
        }
        if stale || epochIndex == Self.cycle - 1 {
            pollingBursts = 0
            sleepingBursts = 0
        }
        epochIndex = stale ? 0 : (epochIndex + 1) % Self.cycle
        if learned == 0 {
            // With nothing learned there is nothing to try: the trial comes first once the
            // window opens, so new traffic is judged within four epochs.
            epochIndex = Self.cycle - 5
            pollingBursts = 0
            sleepingBursts = 0
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
