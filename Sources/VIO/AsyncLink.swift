import VIOLinux
import VIOSharedMemory

/// Async variants: the same non-blocking fast path as the blocking calls; only when the ring
/// is empty (or full) does the task suspend, after arming the doorbell flag, until the
/// process's ``ReadinessReactor`` sees the doorbell. No thread is blocked while waiting.
///
/// One task at a time may await a given link's receive (and one its send), as with threads.
extension LinkEndpoint {
    /// Receives the next message, suspending the task while none is there.
    public func receive(timeout: Duration? = nil) async throws(LinkError) -> [UInt8] {
        let deadline = Deadline(timeout: timeout)
        while true {
            switch Result(catching: { () throws(LinkError) in try receive(timeout: .zero) }) {
            case .success(let message): return message
            case .failure(.wouldBlock): break
            case .failure(let error): throw error
            }
            if deadline.isImmediate { throw .wouldBlock }
            if deadline.hasPassed { throw .timedOut }
            guard armForSleep() else { continue }
            let woken = await ReadinessReactor.shared.readable(dataDoorbellDescriptor, deadline: deadline.nanoseconds)
            disarmAfterSleep(woken: woken)
            if Task.isCancelled { throw .cancelled }
        }
    }

    /// Sends one message, suspending the task while the ring has no room for it.
    /// Messages larger than a fragment are sent with the blocking call once room is there
    /// for the first fragment (the rest follow as the receiver drains).
    public func send(_ bytes: [UInt8], timeout: Duration? = nil) async throws(LinkError) {
        let deadline = Deadline(timeout: timeout)
        let first = min(bytes.count, fragmentPayload)
        while true {
            switch Result(catching: { () throws(LinkError) in try send(bytes, timeout: .zero) }) {
            case .success: return
            case .failure(.wouldBlock) where bytes.count <= fragmentPayload: break
            case .failure(.wouldBlock):
                // A closure picks the blocking overload (in async code the async one wins).
                let remaining = deadline.remaining
                return try Result(catching: { () throws(LinkError) in try send(bytes, timeout: remaining) }).get()
            case .failure(let error): throw error
            }
            if deadline.isImmediate { throw .wouldBlock }
            if deadline.hasPassed { throw .timedOut }
            guard armForSpace(payload: first) else { continue }
            let woken = await ReadinessReactor.shared.readable(spaceDoorbellDescriptor, deadline: deadline.nanoseconds)
            disarmSpaceAfterSleep(woken: woken)
            if Task.isCancelled { throw .cancelled }
        }
    }
}

extension VIOClient {
    /// The next link a peer opened to this instance, suspending the task until one comes.
    public func acceptLink(timeout: Duration? = nil) async throws(VIOError) -> Link {
        let deadline = Deadline(timeout: timeout)
        while true {
            switch Result(catching: { () throws(VIOError) in try acceptLink(timeout: .zero) }) {
            case .success(let link): return link
            case .failure(.timedOut): break
            case .failure(let error): throw error
            }
            if deadline.isImmediate || deadline.hasPassed { throw .timedOut }
            _ = await ReadinessReactor.shared.readable(controlDescriptor, deadline: deadline.nanoseconds)
            if Task.isCancelled { throw .timedOut }
        }
    }
}
