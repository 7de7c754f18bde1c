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
    /// `pidfd`. Without epoll (never seen) the descriptor is closed and the link relies on
    /// the agent, as before.
    func watch(_ link: LinkEndpoint, peerProcess pidfd: consuming OwnedFileDescriptor) {
        guard let poller else { return }
        let fd = pidfd.take()
        let (token, start, released) = state.withLock { state in
            // Links released since the last call no longer need their peer watched.
            let released = state.watches.filter { $0.value.link == nil }
            for key in released.keys { state.watches[key] = nil }
            let token = state.nextToken
            state.nextToken &+= 1
            state.watches[token] = Watch(pidfd: fd, link: link)
            defer { state.started = true }
            return (token, !state.started, released.values.map(\.pidfd))
        }
        for old in released {
            poller.epoll.remove(old)
            close(old)
        }
        do {
            try poller.epoll.add(fd, token: token)
        } catch {
            _ = state.withLock { $0.watches.removeValue(forKey: token) }
            close(fd)
            return
        }
        if start { DetachedThread.start { self.run(poller) } }
    }

    private func run(_ poller: Poller) {
        var events = Epoll.EventBuffer(capacity: 16)
        while true {
            do { try poller.epoll.wait(timeoutMilliseconds: -1, into: &events) } catch { continue }
            for i in 0..<events.count {
                let token = events[i].token
                guard let watch = state.withLock({ $0.watches.removeValue(forKey: token) }) else { continue }
                poller.epoll.remove(watch.pidfd)
                close(watch.pidfd)
                watch.link?.peerProcessExited()
            }
        }
    }
}

/// A detached POSIX thread (libvio does not depend on Foundation).
enum DetachedThread {
    static func start(_ body: @escaping @Sendable () -> Void) {
        final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        if pthread_create(&thread, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box) == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<Box>.fromOpaque(box).release()
        }
    }
}
