import VIOLinux
import VIOSecurity
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// A channel that meets its far agent on TCP and moves onto an RDMA RC queue pair.
///
/// The TCP connection (TLS for an encrypted pair) carries HELLO and its authentication as on
/// any TCP channel. Once the far agent is admitted, the dialer proposes RDMA in a carrier
/// frame; the acceptor answers with a single-use ticket and the port of its RDMA listener (or
/// declines, saying why); the dialer connects a queue pair presenting the ticket, which the
/// acceptor checks before it creates anything, so an agent that failed authentication never
/// gets a queue pair. Each end, once its queue pair is established, sends SWITCH on TCP and
/// from then on sends its frames over the queue pair; each end reads TCP up to the far end's
/// SWITCH and the queue pair after it, so no frame is reordered by the move. The TCP
/// connection stays open, silent: its end is the fastest sign that the far agent died.
///
/// On a plaintext pair, payloads of ``PayloadPulls/threshold`` bytes and more are not copied
/// into the stream: the far agent pulls them from this host's ring into its instance's ring by
/// RDMA READ (``PayloadPulls``).
///
/// On an encrypted pair, every message on the queue pair is one TLS 1.3 record sealed with
/// keys exported from the channel's authenticated TLS session (one per direction): the agent
/// seals frames into its registered send buffers and the far agent opens them in its receive
/// buffers, so a record changed, replayed, dropped or reordered on the wire ends the channel.
///
/// Under `transport: auto`, a pair whose far host declines or whose queue pair cannot be set
/// up stays on TCP and says why (``carrierDescription``); under `transport: rdma` that ends the
/// channel with the reason. A queue pair failure after either end switched ends the channel.
public final class RDMAChannel: FabricChannel {
    private let tcp: TCPChannel
    private let rendezvous: RDMARendezvous
    /// For a dialed channel: the far agent's address, and whether RDMA is required.
    private let dialing: (address: String, required: Bool)?
    /// The descriptors behind this channel (TCP, then the queue pair's two), as one.
    private let sources: Epoll
    private var queuePair: RDMAQueuePair?
    private var watchingCompletions = false
    private var phase = Phase.tcp
    /// This end sends its frames over the queue pair (it sent SWITCH).
    private var sendingOverQueuePair: Bool { phase == .rdma }
    /// The far end sent SWITCH: its frames come over the queue pair.
    private var receivingOverQueuePair = false
    /// Output once this end switched; input once the far end did.
    private let output = OutputQueue()
    private var decoder = FrameDecoder(admitted: true)
    private var admitted = false
    /// The TCP connection is watched for writability (a connect or a flush in progress).
    private var watchingTCPWritable: Bool
    /// The ticket this (accepting) end handed out, until it is used or the channel ends.
    private var ticket: RDMARendezvous.Ticket?
    private var note: String?
    private var rdmaCounters = ChannelCounters()
    /// Record protection on the queue pair (encrypted pairs), set when this end moves.
    private var seal: CarrierSeal?
    /// Frames gathered for one record before sealing (encrypted pairs).
    private var staging: UnsafeMutableRawBufferPointer?
    /// Of the received record being read: content bytes left, and the bytes after them
    /// (content type and tag) to drop with them.
    private var opened: (left: Int, tail: Int)?

    private enum Phase: Equatable {
        /// Frames over TCP; RDMA not asked for yet (or not to be).
        case tcp
        /// The dialer asked; waiting for the ticket.
        case proposed
        /// The queue pair is being connected.
        case connecting
        /// The queue pair is established (this end switched).
        case rdma
        /// The pair stays on TCP.
        case declined
    }

    private enum Token: UInt64 { case tcp, events, completions }

    /// Carrier frame kinds (first payload byte).
    private enum Kind: UInt8 { case propose = 1, offer = 2, decline = 3, switchOver = 4, pull = 5, released = 6 }

    /// Payloads the far agent pulls by RDMA READ, and the one this end pulls (plaintext pairs).
    private let pulls = PayloadPulls()

    /// Version of the move's protocol and the queue pair's buffer layout (`CVIORDMA.h`).
    static let version: UInt8 = 1

    init(dialed tcp: TCPChannel, to address: String, required: Bool, rendezvous: RDMARendezvous) throws(ChannelError) {
        self.tcp = tcp
        self.rendezvous = rendezvous
        dialing = (address, required)
        do { sources = try Epoll() } catch { throw .system(error) }
        watchingTCPWritable = !tcp.isConnected
        do { try sources.add(tcp.descriptor, token: Token.tcp.rawValue, writable: watchingTCPWritable) } catch { throw .system(error) }
    }

    init(accepted tcp: TCPChannel, rendezvous: RDMARendezvous) throws(ChannelError) {
        self.tcp = tcp
        self.rendezvous = rendezvous
        dialing = nil
        do { sources = try Epoll() } catch { throw .system(error) }
        watchingTCPWritable = false
        do { try sources.add(tcp.descriptor, token: Token.tcp.rawValue) } catch { throw .system(error) }
    }

    deinit {
        if let ticket { rendezvous.withdraw(ticket) }
        staging?.deallocate()
    }

    public var descriptor: Int32 { sources.descriptor }
    public var peerDescription: String { tcp.peerDescription }
    public var isConnected: Bool { tcp.isConnected }
    public var authenticatedPeer: Int? { tcp.authenticatedPeer }
    public var securityDescription: String? { tcp.securityDescription }
    public var carrierDescription: String? { note }

    public var capabilities: ChannelCapabilities {
        var c = tcp.capabilities
        if sendingOverQueuePair || receivingOverQueuePair { c.transport = "rdma" }
        return c
    }

    public var counters: ChannelCounters {
        var c = tcp.counters
        c.add(rdmaCounters)
        return c
    }

    public func finishConnect() throws(ChannelError) {
        guard !tcp.isConnected else { return }
        // The set's event may be another source's: only a socket that turned writable (or
        // failed) finished connecting.
        var poller = pollfd(fd: tcp.descriptor, events: Int16(POLLOUT), revents: 0)
        let ready: Int32
        do { ready = try retryingSyscall("poll") { poll(&poller, 1, 0) } } catch { throw .system(error) }
        guard ready > 0 else { return }
        try tcp.finishConnect()
        watchTCPWritable(tcp.queuedBytes > 0)
    }

    public func admit() {
        tcp.admit()
        admitted = true
        guard dialing != nil, phase == .tcp else { return }
        // The far agent proved who it is: ask it for a queue pair.
        sendCarrier(.propose, [Self.version])
        phase = .proposed
    }

    public func close(reason: String) {
        if let ticket { rendezvous.withdraw(ticket); self.ticket = nil }
        // The queue pair stops first, then its memory registrations go, then the rest of it.
        queuePair?.shutdown()
        pulls.release()
        queuePair = nil
        tcp.close(reason: reason)
    }

    // MARK: Sending

    public func enqueue(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, loan: PayloadLoan?) {
        guard sendingOverQueuePair else { return tcp.enqueue(header, prefix: prefix, payload: payload, loan: loan) }
        var h = header
        h.length = UInt32(prefix.count + payload.count)
        rdmaCounters.framesSent &+= 1
        if let loan, pulls.farAcceptsPulls, payload.count >= PayloadPulls.threshold,
           enqueuePull(h, prefix: prefix, payload: payload, loan: loan) {
            return
        }
        // While pulled loans of this lender are out, its inline ones report through the same
        // ledger: ring space is given back in order.
        var routed = loan
        if let loan, let ledger = pulls.ledgers[ObjectIdentifier(loan.lender)] {
            routed = PayloadLoan(lender: ledger, position: ledger.add(position: loan.position, pulled: false))
        }
        output.appendFrame(head: FrameHeader.size + prefix.count, { p in
            h.store(to: p)
            if let source = prefix.baseAddress, prefix.count > 0 { (p + FrameHeader.size).copyMemory(from: source, byteCount: prefix.count) }
        }, payload: payload, loan: routed, inPlace: true)
    }

    /// Puts a PULL descriptor in the stream instead of the payload, when the payload lies in
    /// memory its lender lets this queue pair register; false when it cannot be pulled.
    private func enqueuePull(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
                             loan: PayloadLoan) -> Bool {
        guard let queuePair, let memory = loan.lender.lentMemory,
              let registration = pulls.lent.registration(of: loan.lender, memory, on: queuePair),
              registration.contains(payload) else { return false }
        let ledger = pulls.ledger(for: loan.lender)
        let seq = ledger.add(position: loan.position, pulled: true)
        let token = pulls.nextToken
        pulls.nextToken += 1
        pulls.out[token] = (ledger, seq)
        sendCarrierOnQueuePair(.pull, PayloadPulls.descriptor(header: header, prefix: prefix,
                                                              address: UInt64(UInt(bitPattern: payload.baseAddress!)),
                                                              rkey: registration.remoteKey, count: payload.count, token: token))
        return true
    }

    public func sendNow(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, loan: PayloadLoan?) -> Bool {
        guard sendingOverQueuePair else { return tcp.sendNow(header, prefix: prefix, payload: payload, loan: loan) }
        enqueue(header, prefix: prefix, payload: payload, loan: loan)
        return false
    }

    public var queuedBytes: Int { tcp.queuedBytes + output.count }

    public func flush() throws(ChannelError) -> Bool {
        var done = true
        if tcp.queuedBytes > 0 {
            done = try tcp.flush()
            watchTCPWritable(!done && tcp.isConnected)
            // Nothing goes on the queue pair before TCP has written everything queued ahead of
            // SWITCH: the far end reads the pair only after it, and a link's ring space is given
            // back in order (an inline frame on the pair must not report past one still on TCP).
            if !done { return false }
        }
        if sendingOverQueuePair, output.count > 0, let queuePair {
            done = try flushQueuePair(queuePair) && done
        }
        return done
    }

    /// Copies queued frames into send buffers and posts them; false while credit or buffers
    /// are short (a completion makes the channel readable, and the fabric flushes again).
    private func flushQueuePair(_ queuePair: RDMAQueuePair) throws(ChannelError) -> Bool {
        defer { pulls.pruneLedgers() }
        while output.count > 0 {
            guard let buffer = queuePair.sendBuffer() else {
                try check(queuePair.state)
                return false
            }
            if let seal, let staging {
                let content = gather(into: staging)
                let size = seal.seal(UnsafeRawBufferPointer(rebasing: staging[..<content]), into: buffer.baseAddress!)
                try queuePair.send(size)
                rdmaCounters.bytesSent &+= UInt64(size)
            } else {
                let filled = gather(into: buffer)
                try queuePair.send(filled)
                rdmaCounters.bytesSent &+= UInt64(filled)
            }
        }
        return true
    }

    /// Moves queued bytes into `buffer`, as many as fit: how many.
    private func gather(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        var filled = 0
        while filled < buffer.count, let front = output.front {
            let n = min(front.count, buffer.count - filled)
            (buffer.baseAddress! + filled).copyMemory(from: front.baseAddress!, byteCount: n)
            output.consume(n)
            filled += n
        }
        return filled
    }

    // MARK: Receiving

    public func receive(budget: Int, place: (FrameHeader) -> PayloadPlacement?,
                        _ body: (FrameHeader, UnsafeRawBufferPointer) -> Bool) throws(ChannelError) -> Bool {
        try progress()
        if !receivingOverQueuePair {
            var failure: ChannelError?
            let more = try tcp.receive(budget: budget, place: place) { header, payload in
                guard header.type == .carrier else { return body(header, payload) }
                do throws(ChannelError) { try carrierFrame(payload) } catch {
                    failure = error
                    return false
                }
                // Nothing follows SWITCH on TCP: stop reading it.
                return !receivingOverQueuePair
            }
            if let failure { throw failure }
            guard receivingOverQueuePair else { return more }
        } else {
            // The TCP connection is silent after SWITCH; its end is the far agent's.
            _ = try tcp.receive(budget: 4096, place: { _ in nil }) { header, _ in
                rdmaFailure = .protocolViolation("a \(header.type) frame on TCP after the far agent moved to RDMA")
                return false
            }
            if let rdmaFailure { throw rdmaFailure }
        }
        guard let queuePair else { return false }
        return try receiveFromQueuePair(queuePair, budget: budget, place: place, body)
    }

    private var rdmaFailure: ChannelError?
    /// A TLS record's header, before its content.
    private static let recordHeader = 5

    /// A frame whose payload is copied from the receive buffers straight to its place (a
    /// record reserved in the link's ring): its header, the placement, bytes there so far.
    private var placing: (header: FrameHeader, placement: PayloadPlacement, filled: Int)?
    /// Frames at least this large are placed when the fabric offers a place.
    static let placedFrame = 8 * 1024

    private func receiveFromQueuePair(_ queuePair: RDMAQueuePair, budget: Int, place: (FrameHeader) -> PayloadPlacement?,
                                      _ body: (FrameHeader, UnsafeRawBufferPointer) -> Bool) throws(ChannelError) -> Bool {
        var read = 0
        while true {
            if var p = pulls.pulling {
                // Frames behind a pulled payload wait for its READs.
                for _ in 0..<queuePair.readsFinished() {
                    if let n = p.inFlight.popFirst() { p.landed += n }
                }
                if p.landed < p.count {
                    try readMore(&p, on: queuePair)
                    pulls.pulling = p
                    return false
                }
                pulls.pulling = nil
                rdmaCounters.payloadsPulled &+= 1
                read += p.destination.count
                rdmaCounters.framesReceived &+= 1
                rdmaCounters.bytesReceived &+= UInt64(p.destination.count)
                var token = [UInt8]()
                withUnsafeBytes(of: p.token.littleEndian) { token += $0 }
                sendCarrierOnQueuePair(.released, token)
                if !body(p.header, UnsafeRawBufferPointer(p.destination)) { return true }
                continue
            }
            if let p = placing {
                if p.filled == p.placement.destination.count {
                    placing = nil
                    rdmaCounters.framesReceived &+= 1
                    if !body(p.header, UnsafeRawBufferPointer(p.placement.destination)) { return true }
                    continue
                }
                if read >= budget { return true }
                let rest = UnsafeMutableRawBufferPointer(rebasing: p.placement.destination[p.filled...])
                guard let n = try copyReceived(from: queuePair, into: rest) else { return false }
                placing!.filled += n
                read += n
                continue
            }
            while true {
                let more: Bool?
                do {
                    more = try decoder.nextFrame { header, payload in
                        guard header.type != .carrier else {
                            do throws(ChannelError) { return try queuePairCarrierFrame(payload, queuePair: queuePair, place: place) } catch {
                                rdmaFailure = error
                                return false
                            }
                        }
                        return body(header, payload)
                    }
                } catch {
                    throw .protocolViolation("\(error)")
                }
                if let rdmaFailure { throw rdmaFailure }
                guard let more else { break }
                if pulls.pulling != nil { break }
                rdmaCounters.framesReceived &+= 1
                if !more { return true }
            }
            if pulls.pulling != nil { continue }
            // A large frame only partly here: the rest goes straight where it belongs.
            do {
                if let (header, _) = try decoder.partialFrame(), header.type != .carrier, Int(header.length) >= Self.placedFrame,
                   let placement = place(header), placement.destination.count == Int(header.length) {
                    placing = (header, placement, decoder.takePartialPayload(into: placement.destination.baseAddress!))
                    continue
                }
            } catch {
                throw .protocolViolation("\(error)")
            }
            if read >= budget { return queuePair.received() != nil }
            // Up to the next header only, when it is not here yet: a large frame's payload is
            // then placed rather than buffered and copied again.
            let pending = decoder.pendingBytes
            let limit = pending < FrameHeader.size ? FrameHeader.size - pending : Int.max
            guard let n = try decoder.fill(limit: limit, { buffer throws(ChannelError) -> Int? in
                try copyReceived(from: queuePair, into: buffer)
            }) else { return false }
            read += n
        }
    }

    /// A carrier frame on the queue pair: a PULL (start the READ; false: frames behind it wait)
    /// or RELEASED (a payload this end lent was pulled). Anything else breaks the channel.
    private func queuePairCarrierFrame(_ payload: UnsafeRawBufferPointer, queuePair: RDMAQueuePair,
                           place: (FrameHeader) -> PayloadPlacement?) throws(ChannelError) -> Bool {
        guard let first = payload.first, let kind = Kind(rawValue: first) else { throw .protocolViolation("unknown carrier frame on the queue pair") }
        let body = Array(payload.dropFirst())
        switch kind {
        case .released:
            guard body.count == 8 else { throw .protocolViolation("malformed RELEASED") }
            let token = body.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            guard let (ledger, seq) = pulls.out.removeValue(forKey: token) else {
                throw .protocolViolation("RELEASED for payload \(token), which is not out")
            }
            ledger.released(seq)
            return true
        case .pull:
            let d: (header: FrameHeader, prefix: [UInt8], address: UInt64, rkey: UInt32, count: Int, token: UInt64)
            do { d = try PayloadPulls.parse(body) } catch { throw .protocolViolation("\(error)") }
            guard seal == nil else { throw .protocolViolation("a PULL on an encrypted pair") }
            // Where the payload goes: its place in the instance's ring, or a bounce buffer.
            var destination: UnsafeMutableRawBufferPointer
            var registration: MemoryRegistration?
            var owner: AnyObject?
            if let placement = place(d.header), placement.destination.count == Int(d.header.length),
               let memory = (placement.owner as? PayloadLender)?.lentMemory,
               let r = pulls.placed.registration(of: placement.owner, memory, on: queuePair),
               r.contains(UnsafeRawBufferPointer(placement.destination)) {
                destination = placement.destination
                registration = r
                owner = placement.owner
            } else {
                // This end said it takes PULLs only with its bounce buffer registered.
                guard let bounce = pulls.bounce else { throw .protocolViolation("a PULL, but this end declined pulls") }
                destination = UnsafeMutableRawBufferPointer(rebasing: bounce.buffer[..<Int(d.header.length)])
                registration = bounce.registration
            }
            guard let registration else { throw .carrier("no registered memory for a pulled payload") }
            d.prefix.withUnsafeBytes { destination.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: d.prefix.count) }
            var pull = PayloadPulls.Pull(header: d.header, destination: destination, owner: owner, token: d.token,
                                         registration: registration, prefix: d.prefix.count, remote: d.address, rkey: d.rkey,
                                         posted: 0, landed: 0, count: d.count)
            try readMore(&pull, on: queuePair)
            pulls.pulling = pull
            return false
        default:
            throw .protocolViolation("carrier frame \(kind) on the queue pair")
        }
    }

    /// Posts READs of `pull`'s next pieces, as many as the queue pair allows in flight, once the
    /// previous batch has landed; only the batch's last raises a completion (one wake-up per
    /// batch: a 64 KiB payload is one).
    private func readMore(_ pull: inout PayloadPulls.Pull, on queuePair: RDMAQueuePair) throws(ChannelError) {
        guard pull.inFlight.isEmpty else { return }
        while pull.posted < pull.count, pull.inFlight.count < RDMAQueuePair.readsInFlight {
            let n = min(PayloadPulls.chunk, pull.count - pull.posted)
            let last = pull.posted + n == pull.count || pull.inFlight.count + 1 == RDMAQueuePair.readsInFlight
            try queuePair.read(into: pull.destination.baseAddress! + pull.prefix + pull.posted, pull.registration,
                               from: pull.remote &+ UInt64(pull.posted), rkey: pull.rkey, count: n, signal: last)
            pull.posted += n
            pull.inFlight.append(n)
        }
    }

    /// Copies received stream bytes into `buffer` (opening records on an encrypted pair), at
    /// most one message's worth: how many, nil when nothing has arrived.
    private func copyReceived(from queuePair: RDMAQueuePair, into buffer: UnsafeMutableRawBufferPointer) throws(ChannelError) -> Int? {
        guard var message = queuePair.received() else { return nil }
        let n: Int
        if let seal {
            if opened == nil {
                // A new record: opened in place, its header dropped.
                let content: Int
                do { content = try seal.open(message) } catch { throw .authentication(error.description) }
                try queuePair.consume(Self.recordHeader)
                opened = (content, message.count - Self.recordHeader - content)
                message = queuePair.received()!
            }
            n = min(opened!.left, buffer.count)
            buffer.baseAddress!.copyMemory(from: message.baseAddress!, byteCount: n)
            try queuePair.consume(n)
            opened!.left -= n
            if opened!.left == 0 {
                try queuePair.consume(opened!.tail)
                opened = nil
            }
        } else {
            n = min(message.count, buffer.count)
            buffer.baseAddress!.copyMemory(from: message.baseAddress!, byteCount: n)
            try queuePair.consume(n)
        }
        rdmaCounters.bytesReceived &+= UInt64(n)
        return n
    }

    // MARK: The move to RDMA

    /// Runs the queue pair's events and completions and acts on its state.
    private func progress() throws(ChannelError) {
        guard let queuePair else { return }
        let state = queuePair.progress()
        if !watchingCompletions, let fd = queuePair.completionDescriptor {
            // A dialed queue pair exists once its route is resolved.
            do { try sources.add(fd, token: Token.completions.rawValue) } catch { throw .system(error) }
            watchingCompletions = true
        }
        if phase == .connecting, state == .established {
            try makeSeal()
            // A plaintext pair takes PULLs when its bounce buffer registers (else the far
            // agent copies everything into the stream).
            if seal == nil, pulls.bounce == nil { pulls.bounce = try? PayloadPulls.Bounce(on: queuePair) }
            // Everything sent before goes on TCP, SWITCH last; everything after on the pair.
            sendCarrier(.switchOver, [pulls.bounce != nil ? 1 : 0])
            phase = .rdma
            note = "rdma: \(queuePair.description)"
            return
        }
        try check(state)
    }

    /// On an encrypted pair, the queue pair's record protection (once, by whichever end moves first).
    private func makeSeal() throws(ChannelError) {
        guard seal == nil, let made = try tcp.exportCarrierSeal() else { return }
        seal = made
        staging = .allocate(byteCount: CarrierSeal.maximumContent, alignment: 16)
    }

    /// A queue pair that failed or closed: before either end moved, the channel stays on TCP
    /// unless RDMA is required; after, the channel ends.
    private func check(_ state: RDMAQueuePair.State) throws(ChannelError) {
        let why: String
        switch state {
        case .connecting, .established: return
        case .closed(let w), .failed(let w): why = w
        }
        if sendingOverQueuePair || receivingOverQueuePair || dialing?.required == true {
            throw .carrier("RDMA queue pair: \(why)")
        }
        stayOnTCP("the RDMA queue pair could not be set up: \(why)")
    }

    private func stayOnTCP(_ why: String) {
        if let queuePair {
            sources.remove(queuePair.eventDescriptor)
            if let fd = queuePair.completionDescriptor, watchingCompletions { sources.remove(fd) }
        }
        watchingCompletions = false
        queuePair = nil
        phase = .declined
        note = "tcp: \(why)"
    }

    private func carrierFrame(_ payload: UnsafeRawBufferPointer) throws(ChannelError) {
        guard let first = payload.first, let kind = Kind(rawValue: first) else {
            throw .protocolViolation("unknown carrier frame")
        }
        let body = UnsafeRawBufferPointer(rebasing: payload.dropFirst())
        switch (kind, dialing) {
        case (.propose, nil):
            guard admitted, phase == .tcp else { throw .protocolViolation("RDMA proposed before HELLO or twice") }
            guard body.first == Self.version else {
                phase = .declined
                note = "tcp: the far agent speaks RDMA set-up version \(body.first ?? 0), this one \(Self.version)"
                sendCarrier(.decline, Array("host runs RDMA set-up version \(Self.version)".utf8))
                return
            }
            guard let listener = rendezvous.listener else {
                phase = .declined
                note = "tcp: \(rendezvous.unavailable)"
                sendCarrier(.decline, Array(rendezvous.unavailable.utf8))
                return
            }
            let ticket = rendezvous.issue(to: self)
            self.ticket = ticket
            var offer = [UInt8]()
            withUnsafeBytes(of: listener.port.littleEndian) { offer += $0 }
            offer += ticket.bytes
            sendCarrier(.offer, offer)
            phase = .connecting
        case (.offer, let dialing?):
            guard phase == .proposed, body.count == 2 + RDMARendezvous.Ticket.size else {
                throw .protocolViolation("unexpected RDMA offer")
            }
            let port = UInt16(littleEndian: body.loadUnaligned(as: UInt16.self))
            let ticket = Array(body[2...])
            do {
                let pair = try RDMAQueuePair(dialingFrom: rendezvous.localAddress, to: dialing.address, port: port,
                                             privateData: RDMARendezvous.requestMagic + ticket)
                try watch(pair)
                queuePair = pair
                phase = .connecting
            } catch {
                if dialing.required { throw error }
                stayOnTCP("the RDMA queue pair could not be set up: \(error)")
            }
        case (.decline, let dialing?):
            guard phase == .proposed else { throw .protocolViolation("unexpected RDMA decline") }
            let why = DisplaySafe.escape(String(decoding: body.prefix(512), as: UTF8.self))
            if dialing.required { throw .carrier("transport: rdma, but the far agent declined RDMA: \(why)") }
            stayOnTCP("the far agent declined RDMA: \(why)")
        case (.switchOver, _):
            guard queuePair != nil, body.count == 1 else { throw .protocolViolation("SWITCH without a queue pair") }
            try makeSeal()
            pulls.farAcceptsPulls = body[0] == 1 && seal == nil
            receivingOverQueuePair = true
        default:
            throw .protocolViolation("carrier frame \(kind) out of place")
        }
    }

    /// The accepting end: the dialer presented this channel's ticket.
    func acceptQueuePair(_ request: OpaquePointer) {
        ticket = nil
        do {
            let pair = try RDMAQueuePair(accepting: request)
            try watch(pair)
            queuePair = pair
        } catch {
            // The dialer sees its queue pair fail and stays on TCP (or ends, if required).
            stayOnTCP("the RDMA queue pair could not be accepted: \(error)")
        }
    }

    private func watch(_ pair: RDMAQueuePair) throws(ChannelError) {
        do {
            try sources.add(pair.eventDescriptor, token: Token.events.rawValue)
            if let fd = pair.completionDescriptor {
                try sources.add(fd, token: Token.completions.rawValue)
                watchingCompletions = true
            }
        } catch {
            throw .system(error)
        }
    }

    /// A carrier frame in the queue pair's stream (after the move).
    private func sendCarrierOnQueuePair(_ kind: Kind, _ body: [UInt8]) {
        let bytes = [kind.rawValue] + body
        output.appendFrame(head: FrameHeader.size + bytes.count, { p in
            FrameHeader(type: .carrier, length: UInt32(bytes.count)).store(to: p)
            bytes.withUnsafeBytes { (p + FrameHeader.size).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        }, payload: UnsafeRawBufferPointer(start: nil, count: 0), loan: nil, inPlace: false)
    }

    private func sendCarrier(_ kind: Kind, _ body: [UInt8]) {
        tcp.enqueue(FrameHeader(type: .carrier), bytes: [kind.rawValue] + body)
    }

    private func watchTCPWritable(_ on: Bool) {
        guard on != watchingTCPWritable else { return }
        watchingTCPWritable = on
        try? sources.modify(tcp.descriptor, token: Token.tcp.rawValue, writable: on)
    }
}
