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
    /// Spin for as long as this end's waits usually take (twice that, at least 20 µs), then
    /// sleep; an end whose waits usually take longer than `maxSpinNanoseconds` sleeps at once,
    /// as spinning would not catch the message and would only take the core from others.
    /// Learned per end from the waits it made (``WaitLearning``).
    case adaptive(maxSpinNanoseconds: UInt64)

    /// Adaptive, spinning at most 100 µs (about ten wake-ups' worth here): a client sending
    /// requests back to back spins across each reply and pays no wake-up; a server whose
    /// requests come further apart, or a client whose replies take longer, sleeps at once.
    public static let `default` = WaitPolicy.adaptive(maxSpinNanoseconds: 100_000)
}

/// What an end learns of its waits under ``WaitPolicy/adaptive(maxSpinNanoseconds:)``: a
/// moving average of how long they took (waits that ended within the first few µs of spinning
/// count as ``shortWait``), which sets how long the next one spins.
public struct WaitLearning: Sendable, Equatable {
    /// What a wait that ended before the clock was first read counts as.
    public static let shortWait: UInt64 = 5_000
    /// The shortest spin when spinning at all (a wake-up's worth, several times over).
    public static let minimumSpin: UInt64 = 20_000
    /// Moving average of recent waits (0: none yet).
    public private(set) var typical: UInt64 = 0

    public init() {}

    /// A wait took `nanoseconds`; longer than twice `ceiling` counts as twice it (one long
    /// idle pause must not hide the next burst of quick replies for long).
    public mutating func record(_ nanoseconds: UInt64, ceiling: UInt64) {
        let t = min(nanoseconds, ceiling.multipliedReportingOverflow(by: 2).partialValue)
        typical = typical == 0 ? t : (typical * 3 + t) / 4
    }

    /// How long the next wait spins before it sleeps.
    public func spin(ceiling: UInt64) -> UInt64 {
        if typical == 0 { return ceiling / 2 }
        if typical > ceiling { return 0 }
        return min(ceiling, max(Self.minimumSpin, typical * 2))
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
