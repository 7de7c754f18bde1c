import Atomics
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// One end of a shared-memory link: sends on the ring its peer reads, receives on the ring
/// it reads, and waits on its own doorbells.
///
/// Thread safety: one thread may send while another receives; two concurrent senders (or
/// receivers) must synchronise themselves. `close()` may be called from any thread.
public final class LinkEndpoint: @unchecked Sendable {
    /// The shared region.
    public let region: LinkRegion
    /// Which end this is (0 or 1).
    public let end: Int
    /// The instance at the other end.
    public let peerName: String
    /// How blocking calls wait; change it between calls.
    public var waitPolicy: WaitPolicy {
        get { calls.pointee.waitPolicy }
        set { calls.pointee.waitPolicy = newValue }
    }

    @usableFromInline let producer: RingProducer
    @usableFromInline let consumer: RingConsumer
    private let dataDoorbell: OwnedFileDescriptor
    private let spaceDoorbell: OwnedFileDescriptor
    private let peerDataDoorbell: OwnedFileDescriptor
    private let peerSpaceDoorbell: OwnedFileDescriptor

    /// Largest payload a claim may ask for.
    public let maximumClaim: Int
    /// Fragment size used for large messages.
    public let fragmentPayload: Int

    /// Per-call state behind a pointer: class stored `var`s would pay Swift's dynamic
    /// exclusivity checks on every send and receive.
    private let calls: UnsafeMutablePointer<CallState>

    struct CallState {
        /// Announced length of the message being reassembled, -1 when none.
        var assemblyTotal = -1
        /// Bytes of it received so far.
        var assembled = 0
        /// Reassembly buffer, kept between fragmented messages.
        var assembly: UnsafeMutableRawPointer? = nil
        var assemblyCapacity = 0
        /// Bytes of the outstanding claim, -1 when none.
        var claimed = -1
        /// A fragmented send timed out part-way: the next send starts with an ABORT record.
        var abortPending = false
        /// How blocking calls wait.
        var waitPolicy = WaitPolicy.default
        /// What the adaptive policy learned of this end's waits for messages and for space
        /// (apart: one thread may receive while another sends, and the two waits differ).
        var receiveLearning = WaitLearning()
        var sendLearning = WaitLearning()
        /// This end found the ring it reads corrupt and set the state (so a corrupt state
        /// naming this end that it did not set was written by someone else).
        var foundCorrupt = false
    }

    /// A process whose exit ends this link: its pidfd (readable once it exits), kept open by
    /// `owner`. Set for links to other hosts, whose far end is the local agent.
    private var exitWatch: (descriptor: Int32, owner: AnyObject)?

    /// Makes the link fail with ``LinkError/agentGone(peer:host:possiblyLost:)`` once the process behind
    /// `descriptor` (a pidfd, kept open by `owner`) exits; blocking calls notice it while
    /// they wait. Call before using the link.
    public func endWhenProcessExits(descriptor: Int32, owner: AnyObject) {
        exitWatch = (descriptor, owner)
    }

    /// The watched process (the local agent) exited: the link is gone. Set by this end's own
    /// waits when the pidfd fires, or from another thread (libvio's attachment keeper), so
    /// waits that do not watch the pidfd themselves (many links at once, async tasks) see it.
    private let agentExitNoticed = ManagedAtomic<Bool>(false)

    /// The watched process (the local agent) exited: every wait on this link returns, reads
    /// what is still in the ring, then reports ``LinkError/agentGone(peer:host:possiblyLost:)``.
    /// Safe from any thread.
    public func noteWatchedProcessExited() {
        agentExitNoticed.store(true, ordering: .releasing)
        EventDescriptor.ring(dataDoorbell.rawValue)
        EventDescriptor.ring(spaceDoorbell.rawValue)
    }

    /// The error of a link whose watched process (the local agent) exited.
    private var agentGone: LinkError { .agentGone(peer: peerName, host: region.peerHost, possiblyLost: unacknowledged) }

    /// Messages this end committed (its own count, exact) that the far agent has not
    /// acknowledged (the local agent keeps that count in the region as acknowledgements
    /// arrive): what a lost host or agent may have cost. Sends that raced the loss count too.
    private var unacknowledged: UInt64 {
        let sent = region.counters(ofRing: 1 - end).messagesSent, acknowledged = region.acknowledgedByFarAgent
        return sent > acknowledged ? sent - acknowledged : 0
    }

    /// Whether the watched process has exited (a zero-timeout poll of its pidfd).
    private func watchedProcessExited() -> Bool {
        guard let watch = exitWatch else { return false }
        if agentExitNoticed.load(ordering: .relaxed) { return true }
        guard (try? Poll.readable(watch.descriptor, timeoutMilliseconds: 0)) == true else { return false }
        agentExitNoticed.store(true, ordering: .relaxed)
        return true
    }

    /// End `end` of `region`. `dataDoorbell`/`spaceDoorbell` are this end's (it sleeps on
    /// them); the peer's are rung when data is written or space is freed.
    public init(region: LinkRegion, end: Int, dataDoorbell: consuming OwnedFileDescriptor,
                spaceDoorbell: consuming OwnedFileDescriptor, peerDataDoorbell: consuming OwnedFileDescriptor,
                peerSpaceDoorbell: consuming OwnedFileDescriptor) {
        precondition(end == 0 || end == 1)
        self.region = region
        self.end = end
        peerName = region.name(ofEnd: 1 - end)
        producer = RingProducer(region: region, ring: 1 - end, doorbell: peerDataDoorbell.rawValue)
        consumer = RingConsumer(region: region, ring: end, spaceDoorbell: peerSpaceDoorbell.rawValue)
        self.dataDoorbell = dataDoorbell
        self.spaceDoorbell = spaceDoorbell
        self.peerDataDoorbell = peerDataDoorbell
        self.peerSpaceDoorbell = peerSpaceDoorbell
        calls = .allocate(capacity: 1)
        calls.initialize(to: CallState())
        maximumClaim = min(producer.maximumRecordPayload, region.maxMessage)
        fragmentPayload = RegionLayout.fragmentPayload(capacity: region.capacity(ofRing: 1 - end))
    }

    /// The descriptor that becomes readable when data may have arrived (for epoll/io_uring).
    public var dataDoorbellDescriptor: Int32 { dataDoorbell.rawValue }

    // MARK: State

    /// The error the link's state means for this end, or nil while open.
    public var stateError: LinkError? {
        let s = region.state
        switch s.kind {
        case .open:
            return agentExitNoticed.load(ordering: .relaxed) ? agentGone : nil
        case .closed: return s.end == end ? .closed : .peerClosed(peer: peerName)
        case .gone: return s.end == end ? .closed : .peerGone(peer: peerName)
        case .corrupt:
            return .corruptRing(corruptionReport(s))
        case .removed: return .removedFromTopology(peer: peerName)
        case .hostDown:
            guard !region.peerHost.isEmpty else {
                return .corruptRing("the shared state says the peer's host went down, but this link is within this host: the region was overwritten")
            }
            return .peerHostDown(peer: peerName, host: region.peerHost, possiblyLost: unacknowledged)
        }
    }

    /// Names the memory found corrupt and who found it: the ring this end reads, the ring it
    /// writes, or the state word itself when it holds what nobody writes.
    private func corruptionReport(_ s: LinkStateWord) -> String {
        let word = region.stateWord
        guard LinkStateWord.isWellFormed(word) else {
            return "the link's state word in shared memory holds 0x\(String(word, radix: 16)), which neither end writes: the region was overwritten"
        }
        if s.end == end {
            return calls.pointee.foundCorrupt
                ? "this end found the ring from '\(peerName)' corrupt"
                : "the shared state says this end found the link corrupt, which it did not: the region was overwritten"
        }
        if !region.peerHost.isEmpty {
            // End 1 of a link to another host is the local agent: it ends the link as corrupt
            // for a bad record in this end's ring, or for malformed messages from the far end.
            return "the agent carrying the link to '\(peerName)' on '\(region.peerHost)' ended it: the ring from this end or the messages from '\(peerName)' were malformed (the agents' logs say which)"
        }
        return "'\(peerName)' found the ring from this end corrupt"
    }

    /// A link released without `close()` is closed, so the peer is told.
    deinit {
        close()
        free(calls.pointee.assembly)
        calls.deallocate()
    }

    /// Called once when this end closes the link (libvio tells the agent).
    public var onClose: (@Sendable (UInt64) -> Void)?

    /// Closes this end: the peer receives what was already sent, then `peerClosed`.
    /// Idempotent; a link whose peer already went away is simply released.
    public func close() {
        if region.setState(LinkStateWord(kind: .closed, end: end)) { wakePeer() }
        let notify = onClose
        onClose = nil
        notify?(region.linkID)
    }

    /// The peer's process exited (its pidfd said so): the link is `gone`, as the agent would
    /// mark it, and this end's doorbells ring so its waits return and report it after what
    /// was already sent. Safe from any thread.
    public func peerProcessExited() {
        if region.setState(LinkStateWord(kind: .gone, end: 1 - end)) {
            EventDescriptor.ring(dataDoorbell.rawValue)
            EventDescriptor.ring(spaceDoorbell.rawValue)
        }
    }

    /// Rings both of the peer's doorbells, so a sleeping peer re-reads the region.
    public func wakePeer() {
        EventDescriptor.ring(peerDataDoorbell.rawValue)
        EventDescriptor.ring(peerSpaceDoorbell.rawValue)
    }

    /// Marks the link corrupt for both ends and returns the error to throw.
    private func fail(_ error: LinkError) -> LinkError {
        if case .corruptRing = error, region.setState(LinkStateWord(kind: .corrupt, end: end)) {
            calls.pointee.foundCorrupt = true
            wakePeer()
        }
        return error
    }

    // MARK: Sending

    /// Sends one message (any size up to the link's maximum), fragmenting it when it is
    /// larger than a fragment. Waits for space per ``waitPolicy`` until `timeout` (nil:
    /// forever, `.zero`: never).
    ///
    /// If a fragmented message times out part-way, the receiver never sees it: the next send
    /// (or the receiver's next read) discards the partial message.
    public func send(_ bytes: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(LinkError) {
        if let error = stateError { throw error }
        guard bytes.count <= region.maxMessage else {
            throw .messageTooLarge(size: bytes.count, maximum: region.maxMessage)
        }
        guard calls.pointee.claimed < 0 else { throw .misuse("send while a claim is outstanding; commit or abort it first") }
        var deadline = PendingDeadline(timeout)
        try flushPendingAbort(&deadline)
        if bytes.count <= fragmentPayload {
            let p = try reserve(payload: bytes.count, deadline: &deadline)
            if let source = bytes.baseAddress { p.copyMemory(from: source, byteCount: bytes.count) }
            producer.commit(payload: bytes.count, flags: RegionLayout.Record.first | RegionLayout.Record.last,
                            total: bytes.count)
            return
        }
        var offset = 0
        while offset < bytes.count {
            let chunk = min(fragmentPayload, bytes.count - offset)
            let p: UnsafeMutableRawPointer
            do throws(LinkError) {
                p = try reserve(payload: chunk, deadline: &deadline)
            } catch {
                if offset > 0, case .timedOut = error { calls.pointee.abortPending = true }
                if offset > 0, case .wouldBlock = error { calls.pointee.abortPending = true }
                throw error
            }
            p.copyMemory(from: bytes.baseAddress! + offset, byteCount: chunk)
            var flags: UInt16 = 0
            if offset == 0 { flags |= RegionLayout.Record.first }
            if offset + chunk == bytes.count { flags |= RegionLayout.Record.last }
            producer.commit(payload: chunk, flags: flags, total: offset == 0 ? bytes.count : 0)
            offset += chunk
        }
    }

    /// Sends `bytes`; see ``send(_:timeout:)-(UnsafeRawBufferPointer,_)``.
    public func send(_ bytes: [UInt8], timeout: Duration? = nil) throws(LinkError) {
        // withUnsafeBytes rethrows untyped errors; carry the typed one out in a Result.
        try bytes.withUnsafeBytes { raw in
            Result { () throws(LinkError) in try send(raw, timeout: timeout) }
        }.get()
    }

    /// Claims `size` bytes in the ring to write a message in place (zero copy). At most
    /// ``maximumClaim`` bytes; finish with ``commit(_:)`` or ``abort()``.
    public func claim(_ size: Int, timeout: Duration? = nil) throws(LinkError) -> UnsafeMutableRawBufferPointer {
        if let error = stateError { throw error }
        guard calls.pointee.claimed < 0 else { throw .misuse("claim while another claim is outstanding") }
        guard size >= 0, size <= maximumClaim else {
            throw size > region.maxMessage ? .messageTooLarge(size: size, maximum: region.maxMessage)
                : .claimTooLarge(size: size, maximum: maximumClaim)
        }
        var deadline = PendingDeadline(timeout)
        try flushPendingAbort(&deadline)
        let p = try reserve(payload: size, deadline: &deadline)
        calls.pointee.claimed = size
        return UnsafeMutableRawBufferPointer(start: p, count: size)
    }

    /// Publishes the claimed buffer's first `size` bytes as one message.
    public func commit(_ size: Int) throws(LinkError) {
        guard calls.pointee.claimed >= 0 else { throw .misuse("commit without a claim") }
        guard size >= 0, size <= calls.pointee.claimed else { throw .misuse("commit of \(size) bytes exceeds the \(calls.pointee.claimed) claimed") }
        calls.pointee.claimed = -1
        producer.commit(payload: size, flags: RegionLayout.Record.first | RegionLayout.Record.last, total: size)
    }

    /// Bytes of the outstanding claim, 0 when there is none.
    public var claimedBytes: Int { max(0, calls.pointee.claimed) }

    /// Drops the claim; nothing is sent.
    public func abort() {
        calls.pointee.claimed = -1
    }

    /// Writes the ABORT record owed since a fragmented send timed out part-way, so the
    /// receiver discards that partial message before anything new.
    @inline(__always)
    private func flushPendingAbort(_ deadline: inout PendingDeadline) throws(LinkError) {
        guard calls.pointee.abortPending else { return }
        _ = try reserve(payload: 0, deadline: &deadline)
        producer.commit(payload: 0, flags: RegionLayout.Record.abort, total: 0)
        calls.pointee.abortPending = false
    }

    private func reserve(payload: Int, deadline: inout PendingDeadline) throws(LinkError) -> UnsafeMutableRawPointer {
        var stalled = false
        while true {
            do {
                if let p = try producer.reserve(payload: payload) { return p }
            } catch {
                throw fail(error)
            }
            if let error = stateError { throw error }
            if !stalled { producer.noteStall(); stalled = true }
            // This end writes ring 1 - end; its reader's agent flags it when it stops reading.
            if region.readerStalled(ring: 1 - end) { throw .peerNotResponding(peer: peerName) }
            if deadline.isImmediate { throw .wouldBlock }
            try wait(armed: producer.writerArmed, doorbell: spaceDoorbell.rawValue, deadline: &deadline,
                     learning: &calls.pointee.sendLearning) {
                self.producer.hasSpace(payload: payload) || self.region.readerStalled(ring: 1 - self.end)
            }
        }
    }

    // MARK: Receiving

    /// Receives the next message and passes it to `body` without copying when it came in one
    /// record (the bytes are in the ring, valid only during `body`; a misbehaving peer could
    /// change them meanwhile, never their length). A fragmented message is reassembled first.
    @inlinable
    public func receive<R>(timeout: Duration? = nil, _ body: (UnsafeRawBufferPointer) -> R) throws(LinkError) -> R {
        // Generic only here, inlined into the caller: the core below is not generic, so no
        // per-call generic metadata lookup happens across the module boundary.
        let message = try nextMessage(timeout: timeout)
        defer { finishMessage(message) }
        return body(message.bytes)
    }

    /// Receives the next message as a new array.
    public func receive(timeout: Duration? = nil) throws(LinkError) -> [UInt8] {
        try receive(timeout: timeout) { Array($0) }
    }

    /// A message handed out by ``nextMessage(timeout:)``, valid until ``finishMessage(_:)``.
    public struct PendingMessage {
        /// The message bytes (in the ring, or in the reassembly buffer).
        public let bytes: UnsafeRawBufferPointer
        @usableFromInline let record: RingRecord?
    }

    /// The next whole message; pass it to ``finishMessage(_:)`` when done with its bytes.
    /// Prefer ``receive(timeout:_:)``, which pairs the two.
    public func nextMessage(timeout: Duration? = nil) throws(LinkError) -> PendingMessage {
        var deadline = PendingDeadline(timeout)
        while true {
            let next: RingRecord?
            do { next = try consumer.next() } catch { throw fail(error) }
            if let record = next {
                if let message = try deliver(record) { return message }
                continue
            }
            if let error = stateError {
                // Everything committed before the change has been read: now report it.
                if !consumer.hasData { throw error }
                continue
            }
            if deadline.isImmediate { throw .wouldBlock }
            try wait(armed: consumer.readerArmed, doorbell: dataDoorbell.rawValue, deadline: &deadline,
                     learning: &calls.pointee.receiveLearning) {
                self.consumer.hasData
            }
        }
    }

    /// Releases a message's space in the ring (or its reassembly buffer).
    public func finishMessage(_ message: PendingMessage) {
        if let record = message.record { consumer.release(record) }
    }

    /// Handles one record: returns a message when a whole one is available.
    private func deliver(_ record: RingRecord) throws(LinkError) -> PendingMessage? {
        let first = record.flags & RegionLayout.Record.first != 0
        let last = record.flags & RegionLayout.Record.last != 0
        let length = record.payload.count
        if record.flags == RegionLayout.Record.abort {
            guard calls.pointee.assemblyTotal >= 0 else { throw fail(.corruptRing("abort record outside a fragmented message")) }
            calls.pointee.assemblyTotal = -1
            consumer.release(record)
            return nil
        }
        if calls.pointee.assemblyTotal < 0 {
            guard first else { throw fail(.corruptRing("continuation fragment without a first fragment")) }
            if last {
                guard record.total == length else {
                    throw fail(.corruptRing("single-record message of \(length) bytes claims a total of \(record.total)"))
                }
                return PendingMessage(bytes: record.payload, record: record)
            }
            guard record.total > length, record.total <= region.maxMessage else {
                throw fail(.corruptRing("fragmented message claims \(record.total) bytes (maximum \(region.maxMessage))"))
            }
            calls.pointee.assemblyTotal = record.total
            calls.pointee.assembled = 0
            try reserveAssembly(record.total)
        } else if first {
            throw fail(.corruptRing("new message started inside a fragmented one"))
        }
        let total = calls.pointee.assemblyTotal, have = calls.pointee.assembled
        guard have + length <= total, !last || have + length == total else {
            throw fail(.corruptRing("fragments add up to more or less than the announced \(total) bytes"))
        }
        if let source = record.payload.baseAddress {
            calls.pointee.assembly!.advanced(by: have).copyMemory(from: source, byteCount: length)
        }
        calls.pointee.assembled = have + length
        consumer.release(record)
        guard last else { return nil }
        calls.pointee.assemblyTotal = -1
        return PendingMessage(bytes: UnsafeRawBufferPointer(start: calls.pointee.assembly, count: total), record: nil)
    }

    /// Makes the reassembly buffer hold at least `bytes`; it is kept between messages. The
    /// size comes from the peer (bounded by the region's maximum, which the peer can also
    /// write before this end maps it): an allocation that fails ends the link, it does not
    /// abort the process as Swift's allocator would.
    private func reserveAssembly(_ bytes: Int) throws(LinkError) {
        guard calls.pointee.assemblyCapacity < bytes else { return }
        free(calls.pointee.assembly)
        calls.pointee.assembly = nil
        calls.pointee.assemblyCapacity = 0
        var buffer: UnsafeMutableRawPointer?
        guard posix_memalign(&buffer, 64, bytes) == 0, let buffer else {
            throw fail(.corruptRing("a fragmented message announces \(bytes) bytes; no buffer that large can be allocated"))
        }
        calls.pointee.assembly = buffer
        calls.pointee.assemblyCapacity = bytes
    }

    /// Whether a message (or part of one) is waiting.
    public var hasData: Bool { consumer.hasData }

    // MARK: Waiting

    /// Waits until `ready()` or a state change, per the policy; throws `timedOut` at the deadline.
    /// The clock is first read after 256 idle spins, so a wait that ends quickly costs none.
    private func wait(armed: UnsafeAtomic<UInt32>, doorbell: Int32, deadline pending: inout PendingDeadline,
                      learning: inout WaitLearning, ready: () -> Bool) throws(LinkError) {
        var spinBudget: UInt64 = 0
        // Adaptive: the ceiling, and when the wait started (0: not read yet; the wait is
        // then at most a few µs old).
        var ceiling: UInt64 = 0
        var started: UInt64 = 0
        switch waitPolicy {
        case .busyPoll: spinBudget = .max
        case .spinThenSleep(let ns): spinBudget = ns
        case .sleep: break
        case .adaptive(let maximum):
            // Capped at a second: no spin is worth more, and the learning's sums stay small.
            ceiling = min(max(1, maximum), 1_000_000_000)
            spinBudget = learning.spin(ceiling: ceiling)
        }
        /// Records how long this wait took (adaptive only); a timed-out one as longer than
        /// anything worth spinning for (an end polling with short timeouts while idle).
        func learn(timedOut: Bool = false) {
            guard ceiling > 0 else { return }
            let took = timedOut ? ceiling * 2
                : started == 0 ? WaitLearning.shortWait : MonotonicClock.nanoseconds() &- started &+ WaitLearning.shortWait
            learning.record(took, ceiling: ceiling)
        }
        if spinBudget > 0 {
            var spinUntil: UInt64 = 0
            var spins = 0
            while true {
                if ready() {
                    learn()
                    return
                }
                spins &+= 1
                if spins & 255 == 0 {
                    if region.state.kind != .open { return }
                    // Returns rather than throws: the caller reads what is still in the ring
                    // before it reports the agent gone (``stateError``).
                    if spins & 0xFFFF == 0, watchedProcessExited() { return }
                    let now = MonotonicClock.nanoseconds()
                    if spinUntil == 0 {
                        spinUntil = spinBudget == .max ? .max : now &+ spinBudget
                        started = now
                    }
                    if now >= pending.resolved().nanoseconds {
                        learn(timedOut: true)
                        throw .timedOut
                    }
                    if now >= spinUntil { break }
                }
                CPULocation.relax()
            }
        }
        let deadline = pending.resolved()
        if ceiling > 0 && started == 0 { started = MonotonicClock.nanoseconds() }
        while true {
            // Off the hot path (about to sleep): a full fence makes the re-check below see
            // any tail the producer published before it could have seen our flag.
            armed.store(1, ordering: .sequentiallyConsistent)
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            if ready() || region.state.kind != .open {
                armed.store(0, ordering: .relaxed)
                return
            }
            let remaining = deadline.remainingMilliseconds
            if remaining == 0 {
                armed.store(0, ordering: .relaxed)
                learn(timedOut: true)
                throw .timedOut
            }
            var woke = false
            var exited = false
            do throws(SystemError) {
                if let watch = exitWatch {
                    (woke, exited) = try Poll.readable(doorbell, or: watch.descriptor, timeoutMilliseconds: remaining)
                } else {
                    woke = try Poll.readable(doorbell, timeoutMilliseconds: remaining)
                }
            } catch {
                armed.store(0, ordering: .relaxed)
                throw .system(error)
            }
            armed.store(0, ordering: .relaxed)
            if exited {
                // The caller drains what the agent wrote before it died, then reports it gone.
                agentExitNoticed.store(true, ordering: .relaxed)
                return
            }
            if woke {
                EventDescriptor.drain(doorbell)
                consumer.noteWakeup()
                learn()
                return
            }
        }
    }

    /// Arms the data doorbell for a sleep across many links; returns false (not armed) when
    /// a message or a state change is already there. Pair with ``disarmAfterSleep()``.
    public func armForSleep() -> Bool {
        consumer.readerArmed.store(1, ordering: .sequentiallyConsistent)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if consumer.hasData || region.state.kind != .open || agentExitNoticed.load(ordering: .relaxed) {
            consumer.readerArmed.store(0, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Clears the flag set by ``armForSleep()`` and the doorbell's count.
    public func disarmAfterSleep(woken: Bool) {
        consumer.readerArmed.store(0, ordering: .relaxed)
        if woken {
            EventDescriptor.drain(dataDoorbell.rawValue)
            consumer.noteWakeup()
        }
    }

    /// The descriptor that becomes readable when space may have been freed.
    public var spaceDoorbellDescriptor: Int32 { spaceDoorbell.rawValue }

    /// Arms the space doorbell before sleeping until `payload` bytes fit; false (not armed)
    /// when they already fit or the link changed state. Pair with ``disarmSpaceAfterSleep(woken:)``.
    public func armForSpace(payload: Int) -> Bool {
        producer.writerArmed.store(1, ordering: .sequentiallyConsistent)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if producer.hasSpace(payload: payload) || region.state.kind != .open {
            producer.writerArmed.store(0, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Clears the flag set by ``armForSpace(payload:)`` and the doorbell's count.
    public func disarmSpaceAfterSleep(woken: Bool) {
        producer.writerArmed.store(0, ordering: .relaxed)
        if woken { EventDescriptor.drain(spaceDoorbell.rawValue) }
    }

    /// Whether a receive would not block: a message waits or the link changed state.
    public var isReadable: Bool { consumer.hasData || region.state.kind != .open || agentExitNoticed.load(ordering: .relaxed) }

    /// The counters of both directions as this end sees them.
    public var counters: (sent: RingCounters, received: RingCounters) {
        (region.counters(ofRing: 1 - end), region.counters(ofRing: end))
    }
}
