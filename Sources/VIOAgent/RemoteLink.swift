import Atomics
import DequeModule
import VIOLinux
import VIOSharedMemory
import VIOTopology
import VIOTransport
import VIOWire

/// A frame from the far agent that breaks the protocol, and how much of the fabric it breaks:
/// only what it is wrong for, so one bad session never takes the host pair down.
struct ProtocolViolation: Error, CustomStringConvertible {
    enum Scope: Equatable {
        /// The channel's framing or authentication: the channel is dropped.
        case channel
        /// One session's frame stream (sequence, fragments, credit, its control frames): that
        /// session ends at both ends, the channel and its other sessions carry on.
        case session(UInt32)
        /// One frame that cannot apply (no such session, an invalid transition, a malformed
        /// health answer): it is refused with a control frame and nothing changes.
        case frame
    }
    var scope: Scope
    var description: String
    /// A violation that ends the channel.
    init(_ description: String) { self.init(.channel, description) }
    init(_ scope: Scope, _ description: String) {
        self.scope = scope
        self.description = description
    }
}

/// One virtual link to an instance on another host, as this agent carries it.
///
/// The local instance sees an ordinary link region: it is end 0, and this agent plays end 1
/// under the far instance's name. The agent drains ring 1 (what the instance sends) into data
/// frames, and writes data frames from the far agent into ring 0. Credit is counted in ring
/// bytes (``RegionLayout/Record/size(payload:)`` per frame): the far agent grants it from the
/// space in its instance's ring, so a stopped reader backs up only its own link.
final class RemoteLink: WorkListed {
    let id: LinkID
    let declared: ResolvedLink
    var session: UInt32 { declared.session }
    var instance: String { declared.localEnd }
    var peer: String { declared.peerEnd }
    /// The far host, whose channels carry this link.
    let host: FabricPeer
    var peerHost: String { host.name }
    /// Frame destination ids (topology positions): of this link's local instance, checked on
    /// arriving frames, and of the far instance, stamped on frames sent.
    let localID: UInt32, peerID: UInt32
    /// The channel (index) this link's frames travel on: fixed, so the link stays in order.
    let channel: Int
    let region: LinkRegion
    let data0: OwnedFileDescriptor, space0: OwnedFileDescriptor
    let data1: OwnedFileDescriptor, space1: OwnedFileDescriptor
    /// Writes ring 0 (the instance reads it).
    let producer: RingProducer
    /// Reads ring 1 (the instance writes it).
    let consumer: RingConsumer
    /// The session's state: the one place it lives. (The region's state word is the link as
    /// the instance sees it; ``openRequest`` is bookkeeping of a request, not state.)
    private(set) var machine = SessionStateMachine()
    /// The instance's OPEN_LINK, while the session this end started waits for the far
    /// agent's acceptance: answered with LINK_READY then, refused on a reset or at `deadline`.
    var openRequest: (requestID: UInt32, deadline: UInt64)?
    /// In the fabric's session table (false once unregistered).
    var isRegistered = false
    /// Its two agent-side doorbells (data, space) on the agent's loop.
    var registrations: [Registration] = []
    var lists: WorkLists = []

    // Outbound: instance → far agent.
    /// Ring bytes the far instance's ring may still take.
    var sendCredit = 0
    /// Largest data payload the far agent takes in one frame (and the channel carries).
    var peerMaxFramePayload = 1024
    /// Largest frame payload the channel carrying this link takes
    /// (``ChannelCapabilities/maximumFramePayload``).
    var channelFrameLimit = FrameHeader.maximumPayload
    /// The far agent takes runs of whole messages in one frame (``FrameFlags/records``).
    var peerTakesRuns = false
    var sendSequence: UInt32 = 0
    /// Inside a message the instance is sending in several records.
    var outboundInMessage = false
    /// Bytes the message being sent in several records still owes its announced length:
    /// checked before anything is framed, as a local peer checks, so an instance that
    /// scribbles fragments fails its own link here instead of breaking the channel there.
    var outboundRemaining = 0
    /// Bytes of the current record already framed (a record larger than a frame).
    var outboundRecordOffset = 0
    /// The flags, length and announced total of the current record as checked before its
    /// first frame: the instance may rewrite the header while the record waits for credit,
    /// and the frames already sent promised the far agent the rest. Frames are built from
    /// these, never from a second reading of the header.
    var outboundRecordShape = (flags: UInt16(0), length: 0, total: 0)
    /// Whole messages the far agent acknowledged as delivered into its instance's ring.
    var acknowledgedMessages: UInt64 = 0
    /// Whole messages framed to the far agent: what it may acknowledge at most.
    var framedMessages: UInt64 = 0
    /// Times a record waited for credit.
    var creditStalls: UInt64 = 0
    var stalledOnCredit = false

    // Inbound: far agent → instance.
    /// Credit granted in total, and credit the far agent used.
    var granted: UInt64 = 0
    var creditUsed: UInt64 = 0
    var receiveSequence: UInt32 = 0
    var inboundInMessage = false
    var inboundRemaining = 0
    /// Frames that arrived while the ring had no contiguous room (bounded by the credit).
    var backlog = Deque<BackloggedRecord>()
    var backlogBytes = 0
    /// Whole messages written into ring 0, and the count last acknowledged.
    var deliveredMessages: UInt64 = 0
    var acknowledgedDelivered: UInt64 = 0

    struct BackloggedRecord {
        var bytes: [UInt8]
        var flags: UInt16
        var total: Int
    }

    init(id: LinkID, declared: ResolvedLink, host: FabricPeer, ids: (local: UInt32, peer: UInt32), channel: Int,
         numaNode: Int, openRequest: (requestID: UInt32, deadline: UInt64)?) throws(SystemError) {
        self.id = id
        self.declared = declared
        self.host = host
        (localID, peerID) = ids
        self.channel = channel
        self.openRequest = openRequest
        // Ring 0 is read by the instance (sized for it), ring 1 by this agent (sized for the
        // far instance: the agent forwards as fast as credit allows).
        region = try LinkRegion.create(linkID: id.rawValue, names: (declared.localEnd, declared.peerEnd),
                                       capacities: (declared.ringSizeToLocal.bytes, declared.ringSizeToPeer.bytes),
                                       maxMessage: declared.maxMessageSize.bytes, readerNodes: (numaNode, numaNode),
                                       peerHost: host.name)
        data0 = try EventDescriptor.create(); space0 = try EventDescriptor.create()
        data1 = try EventDescriptor.create(); space1 = try EventDescriptor.create()
        producer = RingProducer(region: region, ring: 0, doorbell: data0.rawValue)
        consumer = RingConsumer(region: region, ring: 1, spaceDoorbell: space0.rawValue)
    }

    /// The descriptors LINK_READY carries to the instance (it is end 0).
    var descriptors: [Int32] {
        [region.memoryFileDescriptor, data0.rawValue, space0.rawValue, data1.rawValue, space1.rawValue]
    }

    /// Credit this agent grants for the whole ring.
    var window: Int { region.capacity(ofRing: 0) }
    /// Largest data payload accepted in one frame: one fragment of ring 0.
    var maxFramePayload: Int { min(RegionLayout.fragmentPayload(capacity: window), channelFrameLimit - 8) }

    /// Data may flow: the session started and has not closed.
    var isOpen: Bool { machine.state != .initial && machine.state != .closed }
    /// The far end closed the session: the link ends once the backlog is in the ring.
    var closeReceived: Bool { machine.state == .closed }

    /// Moves the session on `event`; throws, leaving it as it was, when the state does not allow it.
    func apply(_ event: SessionEvent) throws(InvalidTransition) { try machine.apply(event) }

    /// Records `state` and wakes the instance so its blocked calls see it.
    func finish(_ state: LinkStateWord) {
        if region.setState(state) {
            EventDescriptor.ring(data0.rawValue)
            EventDescriptor.ring(space0.rawValue)
        }
    }

    // MARK: Outbound

    /// Why draining stopped.
    enum DrainResult {
        /// Ring 1 is empty.
        case empty
        /// The next record needs more credit than the far agent granted.
        case needCredit
        /// The byte budget ran out; more is waiting.
        case budgetSpent
        /// The instance wrote something no correct libvio writes.
        case corrupt(String)
    }

    /// Frames what the instance wrote, up to `budget` payload bytes and the credit, handing
    /// each frame to `emit` (header, optional 8-byte message-length prefix, the payload in the
    /// ring, on a record's last frame the ring position to report to ``sent(through:)`` once
    /// the channel has written it, and whether the frame is a whole message with nothing
    /// after it in the ring when looked at). Records stay in the ring until then.
    ///
    /// Two or more whole messages back to back go as one frame of ring records when the far
    /// agent takes them: one header, one credit check and one acknowledgement-counted frame
    /// for all of them, and the far agent commits them into its ring as they are.
    func drain(budget: Int, emit: (FrameHeader, UnsafeRawBufferPointer, UnsafeRawBufferPointer, UInt64?, Bool) -> Void) -> DrainResult {
        var spent = 0
        while spent < budget {
            let next: RingRecord?
            do { next = try consumer.next() } catch { return .corrupt("\(error)") }
            guard let record = next else { return .empty }
            // A lone message (a round trip's) costs one comparison here, not a run search.
            if peerTakesRuns, !outboundInMessage, outboundRecordOffset == 0, record.flags == RegionLayout.Record.first | RegionLayout.Record.last,
               consumer.hasMore(after: record),
               let run = consumer.nextRun(maxBytes: min(peerMaxFramePayload, sendCredit, budget - spent)) {
                sendCredit -= run.bytes.count
                let end = consumer.consume(run)
                emit(header(flags: .records), UnsafeRawBufferPointer(start: nil, count: 0), run.bytes, end, false)
                framedMessages &+= UInt64(run.messages)
                spent += run.bytes.count + FrameHeader.size
                stalledOnCredit = false
                continue
            }
            let first = record.flags & RegionLayout.Record.first != 0
            let last = record.flags & RegionLayout.Record.last != 0
            if outboundRecordOffset > 0, outboundRecordShape != (record.flags, record.payload.count, record.total) {
                return .corrupt("a record's header changed while it was being sent (flags \(outboundRecordShape.flags) -> \(record.flags), length \(outboundRecordShape.length) -> \(record.payload.count), total \(outboundRecordShape.total) -> \(record.total))")
            }
            if record.flags == RegionLayout.Record.abort {
                guard outboundInMessage else { return .corrupt("abort record outside a fragmented message") }
                let cost = RegionLayout.Record.size(payload: 0)
                guard sendCredit >= cost else { return stall() }
                sendCredit -= cost
                let end = consumer.consume(record)
                emit(header(flags: .reset), UnsafeRawBufferPointer(start: nil, count: 0), UnsafeRawBufferPointer(start: nil, count: 0), end, false)
                outboundInMessage = false
                continue
            }
            if outboundRecordOffset == 0 {
                outboundRecordShape = (record.flags, record.payload.count, record.total)
                if first == outboundInMessage {
                    return .corrupt(first ? "new message inside a fragmented one" : "continuation without a first fragment")
                }
                if first && (last ? record.total != record.payload.count
                                  : record.total <= record.payload.count || record.total > region.maxMessage) {
                    return .corrupt("message claims \(record.total) bytes in a \(record.payload.count)-byte record")
                }
                if !first && (record.payload.count > outboundRemaining || (last && record.payload.count != outboundRemaining)) {
                    return .corrupt("fragments add up to more or less than the announced length (\(outboundRemaining) bytes left, a \(record.payload.count)-byte \(last ? "last " : "")fragment)")
                }
            }
            // One record may need several frames when the far agent's frames are smaller.
            let length = record.payload.count
            while true {
                let startsMessage = first && outboundRecordOffset == 0
                let wholeInOneFrame = first && last && length <= peerMaxFramePayload
                let prefixBytes = startsMessage && !wholeInOneFrame ? 8 : 0
                let chunk = min(peerMaxFramePayload - prefixBytes, length - outboundRecordOffset)
                let cost = RegionLayout.Record.size(payload: chunk)
                guard sendCredit >= cost else { return stall() }
                sendCredit -= cost
                let endsRecord = outboundRecordOffset + chunk == length
                // Asked before the record is consumed (the answer needs its size).
                let alone = wholeInOneFrame && !consumer.hasMore(after: record)
                // The position is taken (the record consumed) only with its last frame.
                let end: UInt64? = endsRecord ? consumer.consume(record) : nil
                // Checked above: within the link's maximum when it is sent (a first record).
                var total = UInt64(truncatingIfNeeded: outboundRecordShape.total).littleEndian
                withUnsafeBytes(of: &total) { prefix in
                    emit(header(flags: last && endsRecord ? [] : .more),
                         UnsafeRawBufferPointer(rebasing: prefix[..<prefixBytes]),
                         UnsafeRawBufferPointer(rebasing: record.payload[outboundRecordOffset..<(outboundRecordOffset + chunk)]), end, alone)
                }
                spent += chunk + FrameHeader.size
                outboundRecordOffset += chunk
                if endsRecord { break }
            }
            if last { framedMessages &+= 1 }
            outboundRecordOffset = 0
            outboundInMessage = !last
            // Counted once the record is consumed: a record that waited for credit is checked again.
            outboundRemaining = (first ? outboundRecordShape.total : outboundRemaining) - length
            stalledOnCredit = false
        }
        return .budgetSpent
    }

    private func stall() -> DrainResult {
        if !stalledOnCredit { creditStalls &+= 1; stalledOnCredit = true }
        return .needCredit
    }

    private func header(flags: FrameFlags) -> FrameHeader {
        defer { sendSequence &+= 1 }
        return FrameHeader(type: .data, flags: flags, session: session, sequence: sendSequence)
    }

    /// Whether ring 1 has records or the link's state changed (what a doorbell would say).
    var hasWork: Bool { consumer.hasData || region.state.kind != .open }

    /// Sets ring 1's reader flag before the agent sleeps; false (not armed) when records or a
    /// state change are already there.
    func armForData() -> Bool {
        consumer.readerArmed.store(1, ordering: .sequentiallyConsistent)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if hasWork {
            consumer.readerArmed.store(0, ordering: .relaxed)
            return false
        }
        return true
    }

    // MARK: Inbound

    /// Ring 0 room reserved for the frame the channel is reading in place.
    private var placed: UnsafeMutableRawBufferPointer?

    /// Takes one data frame from the far agent into ring 0 (or the backlog when the ring has
    /// no contiguous room). Throws for anything a correct agent never sends. Returns why the
    /// messages themselves are malformed (a record run the far instance scribbled on while its
    /// agent sent it): that breaks this link only, never the channel; nil when delivered.
    func receive(_ frame: FrameHeader, _ payload: UnsafeRawBufferPointer) throws(ProtocolViolation) -> String? {
        guard frame.sequence == receiveSequence else {
            throw broken("frame \(frame.sequence) arrived, \(receiveSequence) expected")
        }
        receiveSequence &+= 1
        if frame.flags.contains(.records) { return try receiveRun(frame, payload) }
        if frame.flags.contains(.reset) {
            guard inboundInMessage, payload.isEmpty else { throw broken("stray abort") }
            inboundInMessage = false
            try spend(RegionLayout.Record.size(payload: 0))
            write(UnsafeRawBufferPointer(start: nil, count: 0), flags: RegionLayout.Record.abort, total: 0)
            return nil
        }
        var data = payload
        var flags: UInt16 = 0
        var total = 0
        let more = frame.flags.contains(.more)
        if !inboundInMessage {
            flags = RegionLayout.Record.first
            if more {
                guard payload.count >= 8 else { throw broken("fragment without a length") }
                total = Int(truncatingIfNeeded: UInt64(littleEndian: payload.loadUnaligned(as: UInt64.self)))
                data = UnsafeRawBufferPointer(rebasing: payload[8...])
                guard total > data.count, total <= region.maxMessage else {
                    throw broken("message of \(total) bytes (maximum \(region.maxMessage))")
                }
                inboundRemaining = total - data.count
                inboundInMessage = true
            } else {
                flags |= RegionLayout.Record.last
                total = data.count
            }
        } else {
            guard data.count <= inboundRemaining, more || data.count == inboundRemaining else {
                throw broken("fragments do not add up to the announced length")
            }
            inboundRemaining -= data.count
            if !more {
                flags = RegionLayout.Record.last
                inboundInMessage = false
            }
        }
        guard data.count <= maxFramePayload else {
            throw broken("\(data.count)-byte frame exceeds the \(maxFramePayload) granted")
        }
        try spend(RegionLayout.Record.size(payload: data.count))
        if let placed = placed, data.baseAddress == UnsafeRawPointer(placed.baseAddress), data.count == placed.count {
            // Already in the ring (the channel read it into the reserved record): publish it.
            self.placed = nil
            publishRecord(payload: data.count, flags: flags, total: total)
            return nil
        }
        write(data, flags: flags, total: total)
        return nil
    }

    /// A frame of whole messages as ring records: checked, then committed as one run (in
    /// place when the channel read it into the ring), or message by message into the backlog
    /// when the ring has no contiguous room for it.
    private func receiveRun(_ frame: FrameHeader, _ payload: UnsafeRawBufferPointer) throws(ProtocolViolation) -> String? {
        guard !inboundInMessage, frame.flags == .records else {
            throw broken("a record run inside a fragmented message or with flags \(frame.flags.rawValue)")
        }
        guard payload.count <= maxFramePayload else {
            throw broken("\(payload.count)-byte record run exceeds the \(maxFramePayload) granted")
        }
        let run: RecordRun
        do { run = try RecordRun.validate(payload, maxPayload: region.maxMessage) } catch {
            placed = nil
            return "\(error)"
        }
        try spend(payload.count)
        let inPlace = placed.map { payload.baseAddress == UnsafeRawPointer($0.baseAddress) && payload.count == $0.count } ?? false
        placed = nil
        if !inPlace {
            guard backlog.isEmpty, let p = try? producer.reserveRun(bytes: payload.count) else {
                run.forEachMessage { write($0, flags: RegionLayout.Record.first | RegionLayout.Record.last, total: $0.count) }
                return nil
            }
            p.copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        producer.commit(run)
        deliveredMessages &+= UInt64(run.messages)
        return nil
    }

    /// Reserves ring 0 room for a data frame that will be read straight into it: only for a
    /// frame that is next in sequence, carries no length prefix, is within the credit, and
    /// finds the backlog empty and the ring's room contiguous. Anything else takes the
    /// buffered path (and ``receive(_:_:)`` judges it).
    func placement(for frame: FrameHeader) -> UnsafeMutableRawBufferPointer? {
        placed = nil
        let length = Int(frame.length)
        guard isOpen, frame.sequence == receiveSequence, !frame.flags.contains(.reset), backlog.isEmpty,
              length <= maxFramePayload else { return nil }
        let p: UnsafeMutableRawPointer?
        if frame.flags == .records {
            // A run of records lands as it is: its length is its ring bytes (and its credit).
            guard !inboundInMessage, length % RegionLayout.Record.alignment == 0, length > 0,
                  creditUsed + UInt64(length) <= granted else { return nil }
            p = try? producer.reserveRun(bytes: length)
        } else {
            guard inboundInMessage || !frame.flags.contains(.more),
                  creditUsed + UInt64(RegionLayout.Record.size(payload: length)) <= granted else { return nil }
            p = try? producer.reserve(payload: length)
        }
        guard let p else { return nil }
        placed = UnsafeMutableRawBufferPointer(start: p, count: length)
        return placed
    }

    /// A frame that breaks this session's stream: it ends the session, not the channel.
    private func broken(_ what: String) -> ProtocolViolation {
        ProtocolViolation(.session(session), "session \(session): \(what)")
    }

    private func spend(_ cost: Int) throws(ProtocolViolation) {
        guard creditUsed + UInt64(cost) <= granted else {
            throw broken("the far agent sent beyond its credit")
        }
        creditUsed += UInt64(cost)
    }

    private func write(_ data: UnsafeRawBufferPointer, flags: UInt16, total: Int) {
        if backlog.isEmpty, commit(data, flags: flags, total: total) { return }
        let copy = [UInt8](unsafeUninitializedCapacity: data.count) { buffer, initialized in
            if let source = data.baseAddress { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: source, byteCount: data.count) }
            initialized = data.count
        }
        backlog.append(BackloggedRecord(bytes: copy, flags: flags, total: total))
        backlogBytes += RegionLayout.Record.size(payload: data.count)
    }

    private func commit(_ data: UnsafeRawBufferPointer, flags: UInt16, total: Int) -> Bool {
        // A corrupt head (the instance scribbled) reads as "no room": the frames wait in the
        // backlog, bounded by the credit, until the link is torn down.
        guard let p = try? producer.reserve(payload: data.count) else { return false }
        if let source = data.baseAddress { p.copyMemory(from: source, byteCount: data.count) }
        publishRecord(payload: data.count, flags: flags, total: total)
        return true
    }

    /// Commits the reserved record (filled by a copy or read in place) and counts a whole
    /// message delivered.
    private func publishRecord(payload: Int, flags: UInt16, total: Int) {
        producer.commit(payload: payload, flags: flags, total: total)
        if flags & RegionLayout.Record.last != 0 { deliveredMessages &+= 1 }
    }

    /// Moves backlogged frames into the ring as room appears; true when the backlog is empty.
    @discardableResult
    func flushBacklog() -> Bool {
        while let first = backlog.first {
            let done = first.bytes.withUnsafeBytes { commit($0, flags: first.flags, total: first.total) }
            guard done else { return false }
            backlogBytes -= RegionLayout.Record.size(payload: first.bytes.count)
            backlog.removeFirst()
        }
        return true
    }

    /// Credit that can be granted now: the window minus what is in the ring, in the backlog
    /// and still in flight.
    var grantable: Int {
        window - producer.usedBytes - backlogBytes - outstandingCredit
    }

    /// Credit granted to the far agent and not yet used by its frames.
    var outstandingCredit: Int { Int(granted - creditUsed) }

    /// The smallest grant worth a frame of its own: a quarter of the window.
    var minimumGrant: Int { window / 4 }

    /// Nothing is backlogged and the far sender still holds half a window of credit (room for
    /// two largest frames): its next frame brings the agent back to grant, so nothing needs to
    /// happen before then.
    var farSenderHasCredit: Bool { backlog.isEmpty && outstandingCredit >= window / 2 }

    /// Whether ``Fabric/grantCredit(_:force:)`` could do anything now: false when less than
    /// ``minimumGrant`` is grantable and ``farSenderHasCredit``, where it returns at once.
    var wantsGrant: Bool { !farSenderHasCredit || grantable >= minimumGrant }

    /// Sets ring 0's writer flag so the instance rings when it frees space; false (not
    /// armed: try again now) when the first backlogged record fits already, or, with nothing
    /// backlogged, ``minimumGrant`` is grantable. The check after arming is what makes this
    /// safe: space the instance freed before it saw the flag (it rang nothing) is seen here.
    func armForSpace() -> Bool {
        producer.writerArmed.store(1, ordering: .sequentiallyConsistent)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let ready = backlog.first.map { producer.hasSpace(payload: $0.bytes.count) } ?? (grantable >= minimumGrant)
        if ready {
            producer.writerArmed.store(0, ordering: .relaxed)
            return false
        }
        return true
    }
}

extension RemoteLink: PayloadLender {
    /// The channel wrote this link's frames through `position`: their ring space goes back
    /// to the instance (which may be waiting for room).
    func sent(through position: UInt64) { consumer.publish(through: position) }

    /// The link's whole region: a transport may register it, to let the far agent pull
    /// payloads from the ring in place, or to pull payloads into it.
    var lentMemory: UnsafeRawBufferPointer? { UnsafeRawBufferPointer(start: region.base, count: region.byteCount) }
}
