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
