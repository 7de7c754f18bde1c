import Synchronization
import VIOLinux
import VIOSharedMemory

#if canImport(Glibc)
import Glibc
#endif

/// Watches the processes at the far ends of this process's links to instances on the same
/// host, through pidfds the agent hands over with each link. The agent marks a link `gone`
/// when an end exits, but only the agent that made the link knows it: after that agent was
/// killed or restarted, nobody would tell the survivor. So each end watches its peer itself.
///
/// One thread per process, started with the first watched link and asleep in `epoll_wait`
/// (no CPU while the peers live). When a peer exits, its links are marked `gone`, as the agent
/// would mark them, and this end's doorbells are rung: every way of waiting (a blocking call,
/// a ``LinkPoller``, an application's own poll on a doorbell) returns and reports it, and the
/// next send fails.
final class PeerExitMonitor: Sendable {
    /// The process's monitor.
    static let shared = PeerExitMonitor()

    private struct Watch: Sendable {
        /// The peer's pidfd, owned here (closed when the peer exits or the link is gone).
        let pidfd: Int32
        weak var link: LinkEndpoint?
    }

    private struct State: ~Copyable {
        var watches: [UInt64: Watch] = [:]
        var nextToken: UInt64 = 1
        var started = false
    }

    /// epoll's calls are thread-safe: the thread waits while others add.
    private final class Poller: Sendable {
        let epoll: Epoll
        init(_ epoll: consuming Epoll) { self.epoll = epoll }
    }

    private let poller: Poller?
    private let state = Mutex(State())

    private init() {
        do { poller = Poller(try Epoll()) } catch { poller = nil }
    }

    /// Ends `link` as `gone` once the process behind `pidfd` exits; takes ownership of
    /// `pidfd`. Returns the watch's token for ``unwatch(_:)`` (when the link closes), nil when
    /// it could not be watched (the link then relies on the agent, as before).
    ///
    /// Never reads other links here (no weak loads under the lock: releasing the last
    /// reference to a link would run its close, which calls back into the client).
    func watch(_ link: LinkEndpoint, peerProcess pidfd: consuming OwnedFileDescriptor) -> UInt64? {
        guard let poller else { return nil }
        let fd = pidfd.take()
        let token = state.withLock { state in
            let token = state.nextToken
            state.nextToken &+= 1
            state.watches[token] = Watch(pidfd: fd, link: link)
            return token
        }
        do {
            try poller.epoll.add(fd, token: token)
        } catch {
            _ = state.withLock { $0.watches.removeValue(forKey: token) }
            close(fd)
            return nil
        }
        let start = state.withLock { state in
            defer { state.started = true }
            return !state.started
        }
        if start, !DetachedThread.start({ self.run(poller) }) {
            // No thread: the next watch tries again.
            state.withLock { $0.started = false }
        }
        return token
    }

    /// Stops watching for the link that `token` was given for (it closed). Idempotent.
    func unwatch(_ token: UInt64) { _ = end(token) }

    /// Takes the watch out and closes its pidfd; whoever removes it owns that (the thread on
    /// the peer's exit, or the link's close), so it is closed once. Nil when already gone.
    private func end(_ token: UInt64) -> Watch? {
        guard let poller, let watch = state.withLock({ $0.watches.removeValue(forKey: token) }) else { return nil }
        poller.epoll.remove(watch.pidfd)
        close(watch.pidfd)
        return watch
    }

    private func run(_ poller: Poller) {
        var events = Epoll.EventBuffer(capacity: 16)
        while true {
            do { try poller.epoll.wait(timeoutMilliseconds: -1, into: &events) } catch { continue }
            for i in 0..<events.count {
                end(events[i].token)?.link?.peerProcessExited()
            }
        }
    }
}

/// A detached POSIX thread (libvio does not depend on Foundation).
enum DetachedThread {
    /// False when the thread could not be created.
    @discardableResult
    static func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        if pthread_create(&thread, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box) == 0 {
            pthread_detach(thread)
            return true
        }
        Unmanaged<Box>.fromOpaque(box).release()
        return false
    }
}
