import VIOLinux

/// How a blocking call waits for a message (or for space).
public enum WaitPolicy: Sendable, Equatable {
    /// Spin on the ring until the deadline: lowest latency, one core busy while waiting.
    case busyPoll
    /// Spin for `spinNanoseconds`, then arm the flag and sleep on the doorbell. The producer
    /// rings only when the flag is armed, so a busy link makes no syscalls at all.
    case spinThenSleep(spinNanoseconds: UInt64)
    /// Arm and sleep at once: least CPU, a wake-up (several µs) per message.
    case sleep

    /// Spin-then-sleep with a 50 µs spin: several times the cost of a wake-up on today's
    /// machines, so a link under steady traffic never sleeps.
    public static let `default` = WaitPolicy.spinThenSleep(spinNanoseconds: 50_000)
}

/// An absolute point on the monotonic clock, or none.
public struct Deadline: Sendable {
    /// Nanoseconds on ``MonotonicClock``; `UInt64.max` means never.
    public var nanoseconds: UInt64

    /// `timeout` from now: `nil` waits forever, `.zero` does not wait.
    public init(timeout: Duration?) {
        guard let timeout else { nanoseconds = .max; return }
        let (seconds, attoseconds) = timeout.components
        let ns = max(0, seconds) &* 1_000_000_000 &+ max(0, attoseconds / 1_000_000_000)
        nanoseconds = MonotonicClock.nanoseconds() &+ UInt64(ns)
        if timeout <= .zero { nanoseconds = 0 }
    }

    /// Whether the call may not wait at all.
    public var isImmediate: Bool { nanoseconds == 0 }

    /// Whether it has passed.
    public var hasPassed: Bool { nanoseconds != .max && MonotonicClock.nanoseconds() >= nanoseconds }

    /// Time left as a timeout (`nil`: never ends), for handing a deadline to a blocking call.
    public var remaining: Duration? {
        if nanoseconds == .max { return nil }
        let now = MonotonicClock.nanoseconds()
        return .nanoseconds(Int64(nanoseconds > now ? nanoseconds - now : 0))
    }

    /// Milliseconds left, rounded up, for poll(2); -1 for never.
    public var remainingMilliseconds: Int32 {
        if nanoseconds == .max { return -1 }
        let now = MonotonicClock.nanoseconds()
        guard nanoseconds > now else { return 0 }
        return Int32(min(UInt64(Int32.max), (nanoseconds - now + 999_999) / 1_000_000))
    }
}

/// A timeout whose clock reading is taken only when a call actually has to wait, so calls
/// that complete at once (the common case on a busy link) never read the clock.
public struct PendingDeadline {
    private let timeout: Duration?
    private var deadline: Deadline?

    /// `timeout` from the first wait: nil waits forever, `.zero` never waits.
    public init(_ timeout: Duration?) {
        self.timeout = timeout
        deadline = nil
    }

    /// Whether the call may not wait at all.
    public var isImmediate: Bool {
        guard let timeout else { return false }
        return timeout <= .zero
    }

    /// The absolute deadline, fixed at the first call.
    public mutating func resolved() -> Deadline {
        if let deadline { return deadline }
        let d = Deadline(timeout: timeout)
        deadline = d
        return d
    }
}
