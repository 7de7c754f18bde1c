import CVIOShim
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An eventfd used as a doorbell: `ring()` from any process holding it, `wait`/`drain` in
/// the owner. Non-blocking, so waits go through poll(2) or io_uring with a timeout.
public enum EventDescriptor {
    /// A new non-blocking, close-on-exec eventfd.
    public static func create() throws(SystemError) -> OwnedFileDescriptor {
        OwnedFileDescriptor(taking: try retryingSyscall("eventfd") {
            eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        })
    }

    /// Adds 1 to the counter, waking a waiter. A full counter (EAGAIN) already means "rung".
    @inlinable
    public static func ring(_ fd: Int32) {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    /// Resets the counter; returns whether it was rung.
    @discardableResult
    @inlinable
    public static func drain(_ fd: Int32) -> Bool {
        var value: UInt64 = 0
        return read(fd, &value, 8) == 8
    }
}

/// poll(2) on one descriptor, for single-doorbell sleeps (cheaper than io_uring for one fd).
public enum Poll {
    /// Waits until `fd` is readable or `timeoutMilliseconds` pass (-1: forever).
    /// Returns whether it became readable.
    public static func readable(_ fd: Int32, timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return try retryingSyscall("poll") { poll(&p, 1, timeoutMilliseconds) } > 0
    }

    /// Waits until `fd` is writable or `timeoutMilliseconds` pass; returns whether it is.
    public static func writable(_ fd: Int32, timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        return try retryingSyscall("poll") { poll(&p, 1, timeoutMilliseconds) } > 0
    }

    /// POLLRDHUP: the far end of a stream socket shut its writing (or the connection
    /// ended). A GNU extension Glibc's Swift module does not export.
    public static let readHangUp: Int16 = 0x2000

    /// Waits until the far end of socket `fd` hangs up (or an error is pending on it), or
    /// `wake` is readable, or `timeoutMilliseconds` pass (-1: forever; a negative `wake` is
    /// not watched). Returns which happened.
    public static func hangUp(_ fd: Int32, or wake: Int32, timeoutMilliseconds: Int32) throws(SystemError) -> (hungUp: Bool, woken: Bool) {
        try two(fd, events: readHangUp, or: wake, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Waits until `fd` or `other` is readable, or `timeoutMilliseconds` pass (-1: forever).
    /// Returns which were readable.
    public static func readable(_ fd: Int32, or other: Int32, timeoutMilliseconds: Int32) throws(SystemError) -> (Bool, Bool) {
        try two(fd, events: Int16(POLLIN), or: other, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Waits for `events` on `fd` or input on `other`: which had something.
    private static func two(_ fd: Int32, events: Int16, or other: Int32, timeoutMilliseconds: Int32) throws(SystemError) -> (Bool, Bool) {
        // On the stack: a sleeping waiter calls this once per wake-up.
        try withUnsafeTemporaryAllocation(of: pollfd.self, capacity: 2) { p throws(SystemError) in
            p[0] = pollfd(fd: fd, events: events, revents: 0)
            p[1] = pollfd(fd: other, events: Int16(POLLIN), revents: 0)
            guard try retryingSyscall("poll", { poll(p.baseAddress, 2, timeoutMilliseconds) }) > 0 else { return (false, false) }
            return (p[0].revents != 0, p[1].revents != 0)
        }
    }
}
