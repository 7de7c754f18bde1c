#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC readings, for deadlines and uptime.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary fixed point.
    @inlinable
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// An absolute point on the monotonic clock, or none.
public struct Deadline: Sendable {
    /// Nanoseconds on ``MonotonicClock``; `UInt64.max` means never.
    public var nanoseconds: UInt64

    /// An absolute deadline, `UInt64.max` for never.
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

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
        return remainingMilliseconds(at: MonotonicClock.nanoseconds())
    }

    /// Milliseconds left after `now` (a monotonic reading the caller already has), rounded
    /// up; -1 for never.
    public func remainingMilliseconds(at now: UInt64) -> Int32 {
        if nanoseconds == .max { return -1 }
        guard nanoseconds > now else { return 0 }
        return Int32(min(UInt64(Int32.max), (nanoseconds - now + 999_999) / 1_000_000))
    }
}
