#if canImport(Glibc)
import Glibc
#endif

/// One descriptor kept open so a listener can still shed connections when the process is out
/// of descriptors. A listening socket whose `accept` fails with EMFILE stays readable: without
/// a way to take the pending connection off its queue, an event loop would wake for it
/// forever. So the reserve is closed, the connection accepted and closed at once (the client
/// sees its connection end), and the reserve reopened.
///
/// Used from the agent's one thread (accept calls).
public enum DescriptorReserve {
    nonisolated(unsafe) private static var reserve: Int32 = -1
    nonisolated(unsafe) private static var lastReport: UInt64 = 0
    /// Connections shed since start.
    nonisolated(unsafe) public private(set) static var shed: UInt64 = 0

    /// Opens the reserve if it is not open: called when a listener is made, while descriptors
    /// are still to be had (a static's lazy first use would come only once they are gone).
    public static func prepare() {
        if reserve < 0 { reserve = open("/dev/null", O_RDONLY | O_CLOEXEC) }
    }

    /// After `accept` on `listener` failed with `error`: when it is EMFILE or ENFILE, sheds
    /// one pending connection. Returns the error to report, or nil when it was reported less
    /// than a second ago (a burst of connections is one warning, not one per connection).
    public static func shedding(_ error: SystemError, listener: Int32) -> SystemError? {
        guard error.errno == .tooManyOpenFiles || error.errno == .tooManyOpenFilesInSystem else { return error }
        if reserve >= 0 { close(reserve) }
        let accepted = Glibc.accept(listener, nil, nil)
        if accepted >= 0 {
            close(accepted)
            shed &+= 1
        }
        reserve = open("/dev/null", O_RDONLY | O_CLOEXEC)
        let now = MonotonicClock.nanoseconds()
        guard now &- lastReport >= 1_000_000_000 else { return nil }
        lastReport = now
        return SystemError(error.call, error.errno,
                           detail: "out of descriptors: \(shed) connection(s) closed at once so far; raise the limit (ulimit -n, LimitNOFILE)")
    }
}

/// The process's limit on open descriptors.
public enum DescriptorLimit {
    /// Raises the soft limit to the hard one (a process may, unprivileged): proxy mode holds
    /// two descriptors per proxied connection, and the usual soft limit of 1024 would cap an
    /// agent at a few hundred connections. Returns the limit in force.
    @discardableResult
    public static func raiseToMaximum() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }
}
