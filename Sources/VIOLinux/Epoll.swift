import CVIOShim
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Readiness events from epoll(7), for the agent's control-plane loop.
///
/// The agent waits on its control sockets, pidfds, a signalfd, its fabric channels and the
/// doorbells of cross-host links; epoll is the simplest correct tool for that. Links between
/// instances on one host never go through it.
public struct Epoll: ~Copyable, Sendable {
    /// What happened to a registered descriptor.
    public struct Event: Sendable {
        /// The token given at registration.
        public var token: UInt64
        /// Readable (or a listening socket has a connection pending).
        public var readable: Bool
        /// The peer hung up or an error is pending.
        public var hangUp: Bool
        /// Writable (registered with `writable: true`): a connect finished or send space freed.
        public var writable: Bool = false
    }

    private let fd: OwnedFileDescriptor

    /// A new epoll instance.
    public init() throws(SystemError) {
        fd = OwnedFileDescriptor(taking: try retryingSyscall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) })
    }

    /// The epoll instance's own descriptor: readable while any descriptor in the set has an
    /// event, so a set can itself be watched (a channel with several event sources gives its
    /// owner's loop this one descriptor).
    public var descriptor: Int32 { fd.rawValue }

    /// Watches `descriptor` for readability and hang-up, and for writability when `writable`;
    /// events carry `token`.
    public func add(_ descriptor: Int32, token: UInt64, writable: Bool = false) throws(SystemError) {
        var event = Self.event(token: token, writable: writable)
        _ = try retryingSyscall("epoll_ctl(ADD)") { epoll_ctl(fd.rawValue, EPOLL_CTL_ADD, descriptor, &event) }
    }

    /// Changes whether `descriptor` (already added) is watched for writability (and still for
    /// readability).
    public func modify(_ descriptor: Int32, token: UInt64, writable: Bool) throws(SystemError) {
        try modify(descriptor, token: token, readable: true, writable: writable)
    }

    /// Sets what `descriptor` (already added) is watched for. With neither, it is silenced
    /// (EPOLLONESHOT with no events): a hang-up or error is reported at most once until the
    /// next call, so a socket its owner pauses cannot make every wait return at once. Writable
    /// only suits a socket whose input no longer matters (a reply being written): pending
    /// input or a half-close cannot make every wait return at once.
    public func modify(_ descriptor: Int32, token: UInt64, readable: Bool, writable: Bool) throws(SystemError) {
        var event = epoll_event()
        event.events = (readable ? EPOLLIN.rawValue | EPOLLRDHUP.rawValue : 0) | (writable ? EPOLLOUT.rawValue : 0)
        if !readable && !writable { event.events = EPOLLONESHOT.rawValue }
        event.data.u64 = token
        _ = try retryingSyscall("epoll_ctl(MOD)") { epoll_ctl(fd.rawValue, EPOLL_CTL_MOD, descriptor, &event) }
    }

    private static func event(token: UInt64, writable: Bool) -> epoll_event {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | (writable ? EPOLLOUT.rawValue : 0)
        event.data.u64 = token
        return event
    }

    /// Watches `descriptor` for one readability event (EPOLLONESHOT), re-arming it if it was
    /// registered before.
    public func armOnce(_ descriptor: Int32, token: UInt64) throws(SystemError) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLONESHOT.rawValue
        event.data.u64 = token
        if epoll_ctl(fd.rawValue, EPOLL_CTL_MOD, descriptor, &event) == 0 { return }
        _ = try retryingSyscall("epoll_ctl(ADD)") { epoll_ctl(fd.rawValue, EPOLL_CTL_ADD, descriptor, &event) }
    }

    /// Stops watching `descriptor`. Closing a descriptor also removes it.
    public func remove(_ descriptor: Int32) {
        _ = epoll_ctl(fd.rawValue, EPOLL_CTL_DEL, descriptor, nil)
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever) for events, at most the buffer's
    /// capacity, into `buffer` (a loop that waits often reuses one rather than allocating per
    /// call). The buffer is empty if the wait throws.
    public func wait(timeoutMilliseconds: Int32, into buffer: inout EventBuffer) throws(SystemError) {
        buffer.count = 0
        let fd = self.fd.rawValue, storage = buffer.storage
        let n = try retryingSyscall("epoll_wait") {
            epoll_wait(fd, storage.baseAddress, Int32(storage.count), timeoutMilliseconds)
        }
        buffer.count = Int(n)
    }

    /// Room for the events of one `wait`, allocated once.
    public struct EventBuffer: ~Copyable {
        fileprivate let storage: UnsafeMutableBufferPointer<epoll_event>
        /// Events the last wait returned.
        public fileprivate(set) var count = 0

        /// A buffer for at most `capacity` events per wait.
        public init(capacity: Int) {
            storage = .allocate(capacity: max(1, capacity))
        }

        deinit { storage.deallocate() }

        /// Whether the last wait returned no events.
        public var isEmpty: Bool { count == 0 }

        /// Event `index` (below ``count``) of the last wait.
        public subscript(index: Int) -> Event {
            let e = storage[index]
            return Event(token: e.data.u64,
                         readable: e.events & EPOLLIN.rawValue != 0,
                         hangUp: e.events & (EPOLLHUP.rawValue | EPOLLRDHUP.rawValue | EPOLLERR.rawValue) != 0,
                         writable: e.events & EPOLLOUT.rawValue != 0)
        }
    }
}
