import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// The thread that keeps an instance attached: it waits for the agent's end of the control
/// connection to hang up (the agent stopped, crashed or was restarted) and attaches again with
/// backoff (50 ms doubling to 2 s), so an instance needs no code of its own to survive an
/// agent restart. Links already open are shared memory and keep working meanwhile.
final class AttachmentKeeper: @unchecked Sendable {
    /// Rung to stop the thread (the client went away or detached).
    private let wake: OwnedFileDescriptor
    private weak var client: VIOClient?

    static let firstBackoffMilliseconds: Int32 = 50
    static let maximumBackoffMilliseconds: Int32 = 2000

    /// Starts the thread for `client` (nil if a thread or an eventfd could not be had: the
    /// client then works as before, without re-attaching by itself).
    static func start(for client: VIOClient) -> AttachmentKeeper? {
        guard let wake = try? EventDescriptor.create() else { return nil }
        let keeper = AttachmentKeeper(wake: wake, client: client)
        var thread = pthread_t()
        let box = Unmanaged.passRetained(keeper)
        guard pthread_create(&thread, nil, { raw in
            Unmanaged<AttachmentKeeper>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, box.toOpaque()) == 0 else {
            box.release()
            return nil
        }
        pthread_detach(thread)
        return keeper
    }

    private init(wake: consuming OwnedFileDescriptor, client: VIOClient) {
        self.wake = wake
        self.client = client
    }

    /// Ends the thread.
    func stop() { EventDescriptor.ring(wake.rawValue) }

    private func run() {
        while true {
            // The client is held only for the calls: dropping it elsewhere ends the thread.
            guard let socket = client?.controlSocketDescriptor else { return }
            guard let (hungUp, woken) = try? Poll.hangUp(socket, or: wake.rawValue, timeoutMilliseconds: -1), !woken else { return }
            guard hungUp, client?.controlConnectionLost() == true else { continue }
            client?.noticeAgentExit()
            var backoff = Self.firstBackoffMilliseconds
            while true {
                guard let woken = try? Poll.readable(wake.rawValue, timeoutMilliseconds: backoff), !woken else { return }
                guard let outcome = client?.attachAgain() else { return }
                if outcome == .gaveUp { return }
                if outcome == .attached { break }
                backoff = min(backoff * 2, Self.maximumBackoffMilliseconds)
            }
        }
    }
}
