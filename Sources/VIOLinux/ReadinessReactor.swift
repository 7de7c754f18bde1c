import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Suspends async tasks until a descriptor is readable, with a deadline, on one background
/// thread per process (started on first use). Used by libvio's async calls.
///
/// epoll, not io_uring: registrations come from any thread while the reactor thread waits,
/// which epoll supports by design and a liburing submission queue does not.
public final class ReadinessReactor: @unchecked Sendable {
    // @unchecked: `epoll` and `wakeup` are immutable after init and used through
    // thread-safe syscalls; the mutable state is inside `state`.
    /// The process's reactor.
    public static let shared = ReadinessReactor()

    private struct Waiter {
        var fd: Int32
        var deadline: UInt64
        var continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var waiters: [UInt64: Waiter] = [:]
        var nextToken: UInt64 = 1
    }

    private let epoll: Epoll
    private let wakeup: OwnedFileDescriptor
    private let state = Mutex(State())
    private static let wakeupToken = UInt64.max

    private init() {
        do {
            epoll = try Epoll()
            wakeup = try EventDescriptor.create()
            try epoll.add(wakeup.rawValue, token: Self.wakeupToken)
        } catch {
            fatalError("cannot start the readiness reactor: \(error)")
        }
        let thread = UnsafeMutablePointer<pthread_t>.allocate(capacity: 1)
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(thread, nil, { raw in
            Unmanaged<ReadinessReactor>.fromOpaque(raw!).takeRetainedValue().loop()
            return nil
        }, context)
        pthread_detach(thread.pointee)
        thread.deallocate()
    }

    /// Suspends until `fd` is readable (true) or `deadline` (monotonic ns, `.max`: none) passes
    /// (false). Cancelling the task resumes it with false.
    public func readable(_ fd: Int32, deadline: UInt64) async -> Bool {
        let token = state.withLock { s -> UInt64 in
            defer { s.nextToken += 1 }
            return s.nextToken
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                state.withLock { $0.waiters[token] = Waiter(fd: fd, deadline: deadline, continuation: continuation) }
                do {
                    try epoll.armOnce(fd, token: token)
                } catch {
                    resume(token, with: true)  // let the caller retry and see the real error
                    return
                }
                EventDescriptor.ring(wakeup.rawValue)  // re-evaluate the nearest deadline
            }
        } onCancel: {
            resume(token, with: false)
        }
    }

    private func resume(_ token: UInt64, with value: Bool) {
        guard let waiter = state.withLock({ $0.waiters.removeValue(forKey: token) }) else { return }
        waiter.continuation.resume(returning: value)
    }

    private func loop() {
        var events = Epoll.EventBuffer(capacity: 64)
        while true {
            let next = state.withLock { s in s.waiters.values.map(\.deadline).min() ?? .max }
            let timeout = Deadline(nanoseconds: next).remainingMilliseconds
            // A failed wait leaves the buffer empty: the loop then checks deadlines and waits again.
            try? epoll.wait(timeoutMilliseconds: timeout, into: &events)
            for index in 0..<events.count {
                let event = events[index]
                if event.token == Self.wakeupToken {
                    EventDescriptor.drain(wakeup.rawValue)
                } else {
                    resume(event.token, with: true)
                }
            }
            let now = MonotonicClock.nanoseconds()
            let expired = state.withLock { s in s.waiters.filter { $0.value.deadline <= now }.map(\.key) }
            for token in expired { resume(token, with: false) }
        }
    }
}
