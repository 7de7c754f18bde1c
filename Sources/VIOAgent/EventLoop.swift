import VIOLinux

/// A descriptor the agent's loop watches, and what to do when it is ready. The one way
/// anything (control sockets, pidfds, the signalfd, fabric channels and listeners, link
/// doorbells) is put on the loop: no token bit ranges to keep apart by hand.
final class Registration: TokenIdentified {
    let token: UInt64
    let descriptor: Int32
    /// Called with each event; nil once unregistered (the strong reference it holds on its
    /// owner is dropped then, breaking the cycle).
    fileprivate(set) var handler: ((Epoll.Event) -> Void)?

    fileprivate init(token: UInt64, descriptor: Int32, handler: @escaping (Epoll.Event) -> Void) {
        self.token = token
        self.descriptor = descriptor
        self.handler = handler
    }
}

/// The agent's one epoll instance, shared by the control plane and the fabric so a single
/// thread waits on everything (no locks: one thread owns all agent state).
final class EventLoop {
    let epoll: Epoll
    /// Found from an event's token by index, without hashing; a token's serial keeps an event
    /// collected for a registration since removed from reaching the one that reused its slot.
    private var registrations = TokenTable<Registration>()

    init() throws(SystemError) {
        epoll = try Epoll()
    }

    /// Handlers hold their owners (links, channels); a loop that goes away lets them go.
    deinit {
        for registration in registrations.values { registration.handler = nil }
    }

    /// Watches `descriptor` (readable, and `writable` if asked): `handler` gets its events
    /// until ``unregister(_:)``.
    @discardableResult
    func register(_ descriptor: Int32, writable: Bool = false,
                  _ handler: @escaping (Epoll.Event) -> Void) throws(SystemError) -> Registration {
        let registration = registrations.add(base: 0) { Registration(token: $0, descriptor: descriptor, handler: handler) }
        do {
            try epoll.add(descriptor, token: registration.token, writable: writable)
        } catch {
            _ = registrations.remove(registration)
            registration.handler = nil
            throw error
        }
        return registration
    }

    /// Starts or stops watching a registered descriptor for writability.
    func watchWritable(_ registration: Registration, _ writable: Bool) throws(SystemError) {
        try epoll.modify(registration.descriptor, token: registration.token, writable: writable)
    }

    /// Sets what a registered descriptor is watched for (neither: silenced, see
    /// ``Epoll/modify(_:token:readable:writable:)``).
    func watch(_ registration: Registration, readable: Bool, writable: Bool) throws(SystemError) {
        try epoll.modify(registration.descriptor, token: registration.token, readable: readable, writable: writable)
    }

    /// Stops watching; events already collected for it are dropped. Idempotent.
    func unregister(_ registration: Registration) {
        guard registrations.remove(registration) else { return }
        epoll.remove(registration.descriptor)
        registration.handler = nil
    }

    /// Hands `event` to its registration's handler.
    @inline(__always)
    func dispatch(_ event: Epoll.Event) {
        registrations[event.token]?.handler?(event)
    }
}
