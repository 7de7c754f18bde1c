import VIOLinux

/// Waits on many links at once with one io_uring: each link's data doorbell has a multishot
/// poll registered for the poller's lifetime, so a wait is one `io_uring_enter`.
///
/// The same arm-then-recheck protocol as a single link: links with data are reported without
/// sleeping; otherwise every link's flag is armed, so each producer rings exactly when needed.
/// Use from one thread.
public final class LinkPoller {
    /// The links, in the order indices refer to.
    public let links: [Link]
    private let poller: IOURingPoller
    private let controlToken: UInt64?

    /// Polls `links`, and the client's control socket too when `client` is given (its index
    /// is `links.count`: an incoming link or an agent hang-up).
    public init(links: [Link], client: VIOClient? = nil) throws(VIOError) {
        self.links = links
        do {
            poller = try IOURingPoller(entries: UInt32(max(8, links.count + 2)))
            for (i, link) in links.enumerated() { try poller.add(link.dataDoorbellDescriptor, token: UInt64(i)) }
            if let client {
                try poller.add(client.controlDescriptor, token: UInt64(links.count))
                controlToken = UInt64(links.count)
            } else {
                controlToken = nil
            }
        } catch {
            throw .system(error)
        }
    }

    /// Indices of links that can be read without blocking (a message waits, or the link
    /// changed state), waiting up to `timeout` (nil: forever) for at least one.
    public func wait(timeout: Duration? = nil) throws(VIOError) -> [Int] {
        let deadline = Deadline(timeout: timeout)
        while true {
            let ready = links.indices.filter { links[$0].isReadable }
            if !ready.isEmpty { return ready }
            // Arm every link, then re-check: a producer that published before seeing the flag
            // is caught by the re-check, one that publishes after it rings the doorbell.
            var armed: [Int] = []
            var early = false
            for (i, link) in links.enumerated() {
                if link.armForSleep() { armed.append(i) } else { early = true; break }
            }
            if early {
                for i in armed { links[i].disarmAfterSleep(woken: false) }
                continue
            }
            if deadline.isImmediate || deadline.hasPassed {
                for i in armed { links[i].disarmAfterSleep(woken: false) }
                return []
            }
            let remaining = deadline.nanoseconds == .max ? nil : deadline.nanoseconds &- MonotonicClock.nanoseconds()
            let fired: [UInt64]
            do { fired = try poller.wait(timeoutNanoseconds: remaining) } catch {
                for i in armed { links[i].disarmAfterSleep(woken: false) }
                throw .system(error)
            }
            let firedSet = Set(fired)
            for i in armed { links[i].disarmAfterSleep(woken: firedSet.contains(UInt64(i))) }
            if let controlToken, firedSet.contains(controlToken) {
                return links.indices.filter { links[$0].isReadable } + [links.count]
            }
        }
    }
}
