import Logging
import VIOLinux
import VIOSharedMemory
import VIOTopology
import VIOTransport
import VIOWire

/// The session protocol of cross-host links: open, accept, refuse, close and reset, the
/// waits for a host or an instance, and the table of links. Each link's session state lives
/// in its state machine (``RemoteLink/machine``). Framing, credit and the turn are the
/// multiplexer's (``Fabric``); channels are ``ChannelManager``'s.
final class SessionManager {
    /// The fabric this belongs to (set once it exists; it outlives this).
    unowned(unsafe) var fabric: Fabric!
    /// Open and opening links, by session.
    private(set) var links: SessionTable<RemoteLink>
    /// What links unregistered here had carried (metrics totals).
    private(set) var retired = RetiredTraffic()
    /// OPEN_LINKs waiting for their peer host's channels to come up.
    var waitingForHost: [PendingRemoteOpen] = []
    /// SESSION starts waiting for a local instance to attach.
    var waitingForInstance: [WaitingStart] = []
    private var nextLinkID = LinkID.first(.remote)
    /// Links this end opened that the far end has not accepted yet (their deadlines).
    private var opening: [RemoteLink] = []
    /// Sessions of links a reload removed: frames the far agent sent before it heard are
    /// dropped quietly, not refused as undeclared.
    var removed: Set<RemovedSession> = []

    struct RemovedSession: Hashable {
        var peer: String
        var session: UInt32
    }

    struct PendingRemoteOpen {
        var instance: String
        var link: ResolvedLink
        var requestID: UInt32
        var waitMilliseconds: UInt32
        var deadline: UInt64
    }

    struct WaitingStart {
        var session: UInt32
        var open: SessionOpen
        var peer: String
        var deadline: UInt64
    }

    init(view: HostView) {
        links = SessionTable(expected: view.links.count)
    }

    // The fabric's context, as the moved code reads it.
    private var view: HostView { fabric.view }
    private var logger: Logger { fabric.logger }
    private var loop: EventLoop { fabric.loop }
    private var delegate: FabricDelegate? { fabric.delegate }
    private var peers: [String: FabricPeer] { fabric.channels.peers }
    private var peerTimeoutNanoseconds: UInt64 { fabric.peerTimeoutNanoseconds }
    private func clock() -> UInt64 { fabric.clock() }
    private func slot(for link: RemoteLink) -> ChannelSlot? { fabric.channels.slot(for: link) }
    private func send(_ header: FrameHeader, _ payload: [UInt8] = [], on slot: ChannelSlot) { fabric.send(header, payload, on: slot) }
    private func drainLink(_ link: RemoteLink, sendAtOnce: Bool = false) { fabric.drainLink(link, sendAtOnce: sendAtOnce) }

    // MARK: Opening

    /// OPEN_LINK for a link to another host. Returns an error to send now, or nil when the
    /// answer comes later (LINK_READY or an error through the delegate).
    func openLink(instance: String, link declared: ResolvedLink, requestID: UInt32, waitMilliseconds: UInt32) -> ControlError? {
        guard case .remote(let host) = declared.kind, let peer = peers[host] else {
            return ControlError(.internalError, "no fabric peer for the link")
        }
        // One open at a time per link: a second one (libvio never sends it, another client
        // might) would make a second link for the same session.
        if waitingForHost.contains(where: { $0.link.session == declared.session && $0.link.kind == declared.kind }) {
            return ControlError(.alreadyOpen, "an open of the link to '\(declared.peerEnd)' is already waiting for host '\(host)'")
        }
        if let existing = links[peer.number, declared.session] {
            guard existing.isOpen else {
                return ControlError(.alreadyOpen, "an open of the link to '\(declared.peerEnd)' is already in progress")
            }
            let ready = LinkReady(requestID: requestID, linkID: existing.id.rawValue, peer: declared.peerEnd, end: 0,
                                  alreadyDelivered: true)
            _ = delegate?.fabricDeliver(ready, descriptors: [], to: instance)
            return nil
        }
        // Not waiting (0) still takes the far agent's answer a round trip to arrive: the far
        // agent refuses at once if its instance is not attached, so wait up to the peer
        // timeout for that answer rather than expiring the open before it can come.
        let deadline = waitMilliseconds == UInt32.max ? UInt64.max
            : waitMilliseconds == 0 ? clock() + peerTimeoutNanoseconds
            : clock() + UInt64(waitMilliseconds) * 1_000_000
        guard peer.isUp else {
            if waitMilliseconds == 0 {
                return ControlError(.peerHostDown,
                    "host '\(host)' of instance '\(declared.peerEnd)' is not connected (\(peer.lastError.isEmpty ? "connecting" : peer.lastError)); open with a timeout to wait for it")
            }
            waitingForHost.append(PendingRemoteOpen(instance: instance, link: declared, requestID: requestID,
                                                    waitMilliseconds: waitMilliseconds, deadline: deadline))
            return nil
        }
        startSession(instance: instance, link: declared, requestID: requestID, waitMilliseconds: waitMilliseconds,
                     deadline: deadline)
        return nil
    }

    /// Creates the instance's side of the link and sends SESSION start.
    func startSession(instance: String, link declared: ResolvedLink, requestID: UInt32, waitMilliseconds: UInt32,
                      deadline: UInt64) {
        guard case .remote(let host) = declared.kind, let peer = peers[host] else { return }
        guard links[peer.number, declared.session] == nil else {
            // The far end opened it meanwhile (its start arrived first): that link is the one.
            delegate?.fabricRefuse(requestID: requestID, of: instance, ControlError(.alreadyOpen,
                "the link to '\(declared.peerEnd)' was opened from the other end meanwhile; accept it"))
            return
        }
        let link: RemoteLink
        do {
            link = try makeLink(declared, peer: peer, openRequest: (requestID, deadline))
        } catch {
            delegate?.fabricRefuse(requestID: requestID, of: instance,
                                   ControlError(.internalError, "the agent could not create the link: \(error)"))
            return
        }
        guard let slot = slot(for: link) else { return }
        link.granted = UInt64(link.window)
        let open = SessionOpen(from: instance, to: declared.peerEnd, window: UInt32(link.window),
                               maxFramePayload: UInt32(link.maxFramePayload), waitMilliseconds: waitMilliseconds,
                               maxMessageSize: UInt64(declared.maxMessageSize.bytes))
        send(sessionHeader(.session, [.start], link), open.encoded(), on: slot)
    }

    private func makeLink(_ declared: ResolvedLink, peer: FabricPeer,
                          openRequest: (requestID: UInt32, deadline: UInt64)?) throws(SystemError) -> RemoteLink {
        let node = delegate?.fabricAttachment(of: declared.localEnd).numaNode ?? 0
        let link = try RemoteLink(id: nextLinkID, declared: declared, host: peer,
                                  ids: (FabricIdentifiers.instance(declared.localEnd), FabricIdentifiers.instance(declared.peerEnd)),
                                  channel: FabricPeer.channelIndex(session: declared.session, channels: peer.channelCount),
                                  numaNode: node, openRequest: openRequest)
        nextLinkID = nextLinkID.next
        if openRequest != nil { opening.append(link) }
        // Frames no larger than the channel carries, both ways (8 bytes for a length prefix).
        if let slot = peer.slots[link.channel] {
            link.channelFrameLimit = min(FrameHeader.maximumPayload, slot.frameLimit)
        }
        try register(link)
        return link
    }

    func sessionHeader(_ type: FrameType, _ flags: FrameFlags, _ link: RemoteLink) -> FrameHeader {
        FrameHeader(type: type, flags: flags, session: link.session, destination: link.peerID)
    }

    /// SESSION frames: start, close (with data end), reset.
    func sessionFrame(_ header: FrameHeader, _ payload: [UInt8], from peer: FabricPeer) throws(ProtocolViolation) {
        let session = header.session
        guard let declared = declaredLink(session, with: peer.name) else {
            if header.flags.contains(.start) {
                // The far agent's file declares a link this one's does not: the files differ
                // (one was changed and not yet reloaded here, or never will be).
                let open: SessionOpen
                do { open = try SessionOpen(decoding: payload) } catch { throw ProtocolViolation(.frame, "malformed SESSION start: \(error)") }
                // Neutral about which file is behind: a reload on either side may have done it.
                let how = removed.contains(RemovedSession(peer: peer.name, session: session))
                    ? "a reload on '\(view.host.name)' removed it" : "the two hosts' files differ"
                reset(session: session, to: open.from, peer: peer, .refused,
                      "no link '\(open.from)' <-> '\(open.to)' is declared in the topology of host '\(view.host.name)' (\(fabric.topologySource)): \(how); give both hosts the same file and reload their agents")
                return
            }
            try unknownSession(header, from: peer)
            return
        }
        if header.flags.contains(.stalled) {
            guard payload.count == 1, payload[0] <= 1 else {
                throw ProtocolViolation(.frame, "session \(session): a not-responding notice of \(payload.count) bytes")
            }
            guard let link = links[peer.number, session], link.isOpen else { return }
            // Ring 1 is the one this host's instance writes, read (here) for the far instance.
            link.region.setReaderStalled(ring: 1, payload[0] == 1)
            EventDescriptor.ring(link.space0.rawValue)
            return
        }
        if header.flags.contains(.start) {
            let open: SessionOpen
            do { open = try SessionOpen(decoding: payload) } catch { throw ProtocolViolation(.session(session), "malformed SESSION start: \(error)") }
            guard open.from == declared.peerEnd, open.to == declared.localEnd else {
                // Ids are derived from names; two files resolve a collision differently only
                // when they declare different links between the pair.
                reset(session: session, to: open.from, peer: peer, .refused,
                      "session \(session) is '\(declared.peerEnd)' -> '\(declared.localEnd)' on host '\(view.host.name)', not '\(open.from)' -> '\(open.to)': the two hosts' files declare different links between them; give both the same file")
                return
            }
            if open.maxMessageSize != 0, open.maxMessageSize != UInt64(declared.maxMessageSize.bytes) {
                reset(session: session, to: open.from, peer: peer, .refused,
                      "the link '\(open.from)' <-> '\(open.to)' is declared differently on the two hosts: max_message_size \(ByteSize(bytes: Int(clamping: open.maxMessageSize))) on '\(peer.name)', \(declared.maxMessageSize) on '\(view.host.name)'; give both the same file")
                return
            }
            if let existing = links[peer.number, session] {
                if let (requestID, _) = existing.openRequest {
                    // Both ends opened at once: each start accepts the other.
                    accept(existing, open, requestID: requestID, acknowledge: true)
                    return
                }
                // The far side lost the old session before we heard of it.
                existing.finish(LinkStateWord(kind: .gone, end: 1))
                unregister(existing)
            }
            waitingForInstance.removeAll { $0.session == session && $0.peer == peer.name }
            if delegate?.fabricAttachment(of: declared.localEnd).attached == true {
                acceptNew(declared, open, peer: peer)
            } else if open.waitMilliseconds == 0 {
                reset(session: session, declared: declared, peer: peer, .notAttached,
                      "instance '\(declared.localEnd)' is not attached to the agent on '\(view.host.name)'")
            } else {
                let deadline = open.waitMilliseconds == UInt32.max ? UInt64.max
                    : clock() + UInt64(open.waitMilliseconds) * 1_000_000
                waitingForInstance.append(WaitingStart(session: session, open: open, peer: peer.name, deadline: deadline))
            }
            return
        }
        if header.flags.contains(.reset) {
            let reset: SessionReset
            do { reset = try SessionReset(decoding: payload) } catch { throw ProtocolViolation(.session(session), "malformed SESSION reset: \(error)") }
            waitingForInstance.removeAll { $0.session == session && $0.peer == peer.name }
            guard let link = links[peer.number, session] else { return }
            if let (requestID, _) = link.openRequest {
                unregister(link)
                link.finish(LinkStateWord(kind: .closed, end: 1))
                let code: ControlError.Code = reset.reason == .notAttached ? .peerNotAttached : .undeclaredLink
                delegate?.fabricRefuse(requestID: requestID, of: link.instance, ControlError(code, reset.message))
                return
            }
            let kind: LinkStateWord.Kind = switch reset.reason {
            case .gone: .gone
            case .corrupt: .corrupt
            case .removed: .removed
            default: .closed
            }
            link.finish(LinkStateWord(kind: kind, end: 1))
            unregister(link)
            logger.info("link reset by the far agent", metadata: ["link": "\(link.instance) <-> \(link.peer)",
                                                                  "reason": "\(reset.message)"])
            return
        }
        if header.flags.contains(.close) {
            guard let link = links[peer.number, session] else { return }
            do {
                if header.flags.contains(.dataEnd) { try link.apply(.readDataEnd) }
                try link.apply(.close)
            } catch {
                throw ProtocolViolation(.frame, "session \(session): \(error)")
            }
            finishRemoteClose(link)
            return
        }
        throw ProtocolViolation(.session(session), "SESSION frame without start, close or reset")
    }

    /// Accepts a start for a link whose instance is attached here.
    private func acceptNew(_ declared: ResolvedLink, _ open: SessionOpen, peer: FabricPeer) {
        let link: RemoteLink
        do {
            link = try makeLink(declared, peer: peer, openRequest: nil)
        } catch {
            reset(session: declared.session, declared: declared, peer: peer, .refused, "the far agent could not create the link: \(error)")
            return
        }
        link.granted = UInt64(link.window)
        let ready = LinkReady(requestID: 0, linkID: link.id.rawValue, peer: declared.peerEnd, end: 0, alreadyDelivered: false)
        guard delegate?.fabricDeliver(ready, descriptors: link.descriptors, to: declared.localEnd) == true else {
            unregister(link)
            reset(session: declared.session, declared: declared, peer: peer, .notAttached,
                  "instance '\(declared.localEnd)' could not take the link")
            return
        }
        accept(link, open, requestID: nil, acknowledge: true)
    }

    /// The session is open: record the far side's window and tell our instance.
    private func accept(_ link: RemoteLink, _ open: SessionOpen, requestID: UInt32?, acknowledge: Bool) {
        link.sendCredit = Int(open.window)
        link.peerMaxFramePayload = min(Int(open.maxFramePayload), link.channelFrameLimit - 8)
        link.peerTakesRuns = open.features.contains(.recordRuns)
        link.openRequest = nil
        do { try link.apply(.start) } catch {
            // Only a link in its initial state is accepted; anything else is a bug here.
            logger.error("session accepted twice", metadata: ["session": "\(link.session)", "reason": "\(error)"])
        }
        if acknowledge, let slot = slot(for: link) {
            let mine = SessionOpen(from: link.instance, to: link.peer, window: UInt32(link.window),
                                   maxFramePayload: UInt32(link.maxFramePayload))
            send(sessionHeader(.acknowledgement, [.start], link), mine.encoded(), on: slot)
        }
        if let requestID {
            let ready = LinkReady(requestID: requestID, linkID: link.id.rawValue, peer: link.peer, end: 0, alreadyDelivered: false)
            guard delegate?.fabricDeliver(ready, descriptors: link.descriptors, to: link.instance) == true else {
                link.finish(LinkStateWord(kind: .gone, end: 0))
                sendReset(link, .gone, "instance '\(link.instance)' went away while the link opened")
                unregister(link)
                return
            }
        }
        logger.info("link open", metadata: ["id": "\(link.id)", "ends": "\(link.instance) <-> \(link.peer)@\(link.peerHost)",
                                            "session": "\(link.session)", "channel": "\(link.channel)"])
        fabric.readyLinks.insert(link)
    }

    func reset(session: UInt32, declared: ResolvedLink, peer: FabricPeer, _ reason: SessionReset.Reason, _ message: String) {
        reset(session: session, to: declared.peerEnd, peer: peer, reason, message)
    }

    /// Resets `session` for the far agent, whose instance `instance` is its end there.
    func reset(session: UInt32, to instance: String, peer: FabricPeer, _ reason: SessionReset.Reason, _ message: String) {
        let index = FabricPeer.channelIndex(session: session, channels: peer.channelCount)
        guard peer.isUp, let slot = peer.slots[index] else { return }
        send(FrameHeader(type: .session, flags: .reset, session: session, destination: FabricIdentifiers.instance(instance)),
             SessionReset(reason, message).encoded(), on: slot)
    }

    func sendReset(_ link: RemoteLink, _ reason: SessionReset.Reason, _ message: String) {
        guard let slot = slot(for: link) else { return }
        send(sessionHeader(.session, .reset, link), SessionReset(reason, message).encoded(), on: slot)
    }

    // MARK: Acknowledgements and corrupt links

    /// ACK frames: acceptance of our start, or credit and delivered-message counts.
    func acknowledged(_ link: RemoteLink, _ header: FrameHeader, _ payload: [UInt8]) throws(ProtocolViolation) {
        if header.flags.contains(.start) {
            let open: SessionOpen
            do { open = try SessionOpen(decoding: payload) } catch { throw ProtocolViolation(.session(link.session), "malformed acceptance: \(error)") }
            if let (requestID, _) = link.openRequest {
                accept(link, open, requestID: requestID, acknowledge: false)
            }
            return
        }
        guard payload.count == 8 else { throw ProtocolViolation(.session(link.session), "acknowledgement of \(payload.count) bytes") }
        let delivered = payload.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard delivered >= link.acknowledgedMessages else { throw ProtocolViolation(.session(link.session), "acknowledged count went backwards") }
        // More than was sent would hide what a host loss may have lost (possiblyLost).
        guard delivered <= link.framedMessages else {
            throw ProtocolViolation(.session(link.session), "acknowledged \(delivered) messages, \(link.framedMessages) were sent")
        }
        link.acknowledgedMessages = delivered
        // Kept in the region as it grows: should this agent die, the instance still knows.
        link.region.setAcknowledgedByFarAgent(delivered)
        link.sendCredit += Int(header.credit)
        guard link.sendCredit <= link.region.capacity(ofRing: 1) * 2 + FrameHeader.maximumPayload * 2 else {
            throw ProtocolViolation(.session(link.session), "session \(link.session): credit beyond any ring")
        }
        if header.credit > 0 { drainLink(link) }
    }

    /// The far instance's messages on `link` arrived malformed (its ring changed while its
    /// agent sent from it): the link ends as corrupt at both ends; the channel and the other
    /// links on it carry on.
    func corruptFromFar(_ link: RemoteLink, _ why: String) {
        endCorrupt(link, "malformed messages from the far instance", detail: why,
                   reset: "messages from '\(link.peer)' arrived malformed on '\(view.host.name)': \(why)")
    }

    /// Ends `link` as corrupt at both ends (logged with `detail`, the far agent told `reset`);
    /// the channel and the other links on it carry on.
    func endCorrupt(_ link: RemoteLink, _ message: Logger.Message, detail: String, reset: String) {
        logger.warning(message, metadata: ["link": "\(link.instance) <-> \(link.peer)@\(link.peerHost)", "detail": "\(detail)"])
        link.finish(LinkStateWord(kind: .corrupt, end: 1))
        sendReset(link, .corrupt, reset)
        unregister(link)
    }

    /// The instance closed (or broke) its end and everything it sent is framed.
    func instanceEnded(_ link: RemoteLink, _ state: LinkStateWord) {
        switch state.kind {
        case .closed:
            // From open (data write and read): end of data, then close. A session the far
            // end already ended its data on (data write) goes straight to close.
            if link.machine.state == .open { try? link.apply(.writeDataEnd) }
            try? link.apply(.close)
            if let slot = slot(for: link) { send(sessionHeader(.session, [.dataEnd, .close], link), on: slot) }
        case .corrupt:
            sendReset(link, .corrupt, "'\(link.instance)' found its ring corrupt")
        default:
            sendReset(link, .gone, "instance '\(link.instance)' is gone")
        }
        logger.info("link closed", metadata: ["id": "\(link.id)", "by": "\(link.instance)"])
        unregister(link)
    }

    /// Applies a close from the far end once everything it sent is in the ring.
    func finishRemoteClose(_ link: RemoteLink) {
        while !link.flushBacklog() {
            // Armed: the instance rings when it frees space. Not armed: the backlog fits now.
            if link.armForSpace() { return }
        }
        if let (requestID, _) = link.openRequest {
            // Closed before it was accepted: the OPEN_LINK waiting for it hears so.
            delegate?.fabricRefuse(requestID: requestID, of: link.instance, ControlError(.peerNotAttached,
                "'\(link.peer)' on host '\(link.peerHost)' closed the link before accepting it"))
        }
        link.finish(LinkStateWord(kind: .closed, end: 1))
        unregister(link)
        logger.info("link closed", metadata: ["id": "\(link.id)", "by": "\(link.peer)@\(link.peerHost)"])
    }

    /// The peer host is down: the link reports it with the count of unacknowledged messages.
    func linkHostDown(_ link: RemoteLink) {
        if let (requestID, _) = link.openRequest {
            delegate?.fabricRefuse(requestID: requestID, of: link.instance,
                                   ControlError(.peerHostDown, "host '\(link.peerHost)' went down while the link opened"))
        }
        link.region.setAcknowledgedByFarAgent(link.acknowledgedMessages)
        link.finish(LinkStateWord(kind: .hostDown, end: 1))
        unregister(link)
    }

    // MARK: Instances

    /// Starts waiting for `instance` complete now.
    func instanceAttached(_ instance: String) {
        let starting = waitingForInstance.filter { start in
            declaredLink(start.session, with: start.peer)?.localEnd == instance
        }
        waitingForInstance.removeAll { w in starting.contains { $0.session == w.session && $0.peer == w.peer } }
        for start in starting {
            guard let peer = peers[start.peer], peer.isUp,
                  let declared = declaredLink(start.session, with: start.peer) else { continue }
            acceptNew(declared, start.open, peer: peer)
        }
    }

    /// `instance` exited or detached: its links are reset for the far ends. A link it closed
    /// in order first is still drained: what it sent before closing is delivered.
    func instanceGone(_ instance: String) {
        waitingForHost.removeAll { $0.instance == instance }
        for link in links.values where link.instance == instance {
            let state = link.region.state
            if link.isOpen && state.kind == .closed && state.end == 0 {
                drainLink(link)
                continue
            }
            link.finish(LinkStateWord(kind: .gone, end: 0))
            sendReset(link, .gone, "instance '\(instance)' on '\(view.host.name)' exited or detached")
            unregister(link)
        }
    }

    /// CLOSE_LINK from the instance: frame what it sent before, then the close.
    func closeLink(id: LinkID, by instance: String) -> Bool {
        guard let link = links.values.first(where: { $0.id == id && $0.instance == instance }) else { return id.kind == .remote }
        drainLink(link)
        return true
    }

    /// Opens and starts whose deadline passed.
    func expireWaits(_ now: UInt64) {
        let expired = waitingForHost.filter { $0.deadline <= now }
        waitingForHost.removeAll { $0.deadline <= now }
        for pending in expired {
            guard case .remote(let host) = pending.link.kind else { continue }
            delegate?.fabricRefuse(requestID: pending.requestID, of: pending.instance, ControlError(.peerHostDown,
                "host '\(host)' did not come up before the timeout (\(peers[host]?.lastError ?? "no channel"))"))
        }
        for start in waitingForInstance where start.deadline <= now {
            if let peer = peers[start.peer], let declared = declaredLink(start.session, with: start.peer) {
                reset(session: start.session, declared: declared, peer: peer, .notAttached,
                      "instance '\(declared.localEnd)' did not attach to the agent on '\(view.host.name)' in time")
            }
        }
        waitingForInstance.removeAll { $0.deadline <= now }
        opening.removeAll { $0.openRequest == nil || !$0.isRegistered }
        for link in opening {
            guard let (requestID, deadline) = link.openRequest, deadline <= now else { continue }
            delegate?.fabricRefuse(requestID: requestID, of: link.instance, ControlError(.peerNotAttached,
                "instance '\(link.peer)' on host '\(link.peerHost)' did not accept the link before the timeout; is it running?"))
            sendReset(link, .cancelled, "'\(link.instance)' stopped waiting")
            link.finish(LinkStateWord(kind: .closed, end: 0))
            unregister(link)
        }
    }

    // MARK: Faults and lookups

    /// A frame broke one session's protocol: that session ends at both ends (the far agent is
    /// told in a reset, the local instance sees the link corrupt); the channel carries on.
    func endSession(_ session: UInt32, on slot: ChannelSlot, _ reason: String) {
        guard let peer = slot.peer else { return }
        logger.warning("session ended: the far agent broke its protocol",
                       metadata: ["peer": "\(peer.name)", "session": "\(session)", "reason": "\(reason)"])
        let message = "'\(view.host.name)' ended session \(session): \(reason)"
        waitingForInstance.removeAll { $0.session == session && $0.peer == peer.name }
        if let link = links[peer.number, session] {
            if let (requestID, _) = link.openRequest {
                delegate?.fabricRefuse(requestID: requestID, of: link.instance, ControlError(.internalError, message))
            }
            link.finish(LinkStateWord(kind: .corrupt, end: 1))
            sendReset(link, .corrupt, message)
            unregister(link)
        } else if let declared = declaredLink(session, with: peer.name) {
            reset(session: session, declared: declared, peer: peer, .corrupt, message)
        }
    }

    /// A frame for a session that is not open here: legal for a declared link (a close
    /// crossed it), a protocol violation otherwise.
    func unknownSession(_ header: FrameHeader, from peer: FabricPeer) throws(ProtocolViolation) {
        guard declaredLink(header.session, with: peer.name) != nil || removed.contains(RemovedSession(peer: peer.name, session: header.session)) else {
            throw ProtocolViolation(.frame, "frame for session \(header.session), which is not a link between \(view.host.name) and \(peer.name)")
        }
        logger.debug("frame for a closed session dropped", metadata: ["session": "\(header.session)", "type": "\(header.type)"])
    }

    /// The link `session` names, if the topology declares it between this host and `peer`
    /// (anything from the far agent is checked against this before it is believed).
    private func declaredLink(_ session: UInt32, with peer: String) -> ResolvedLink? {
        view.links.first { $0.session == session && $0.kind == .remote(host: peer) }
    }

    /// The open link carrying `declared`, for status.
    func link(for declared: ResolvedLink) -> RemoteLink? {
        guard case .remote(let host) = declared.kind, let peer = peers[host],
              let link = links[peer.number, declared.session], link.instance == declared.localEnd else { return nil }
        return link
    }

    func register(_ link: RemoteLink) throws(SystemError) {
        // unowned(unsafe) as for channels: these run once per message in each direction.
        let fabric: Fabric = self.fabric
        let data = try loop.register(link.data1.rawValue) { [unowned(unsafe) fabric] _ in fabric.dataRang(link) }
        do {
            link.registrations = [data, try loop.register(link.space1.rawValue) { [unowned(unsafe) fabric] _ in fabric.spaceRang(link) }]
        } catch {
            loop.unregister(data)
            throw error
        }
        links[link.host.number, link.session] = link
        link.isRegistered = true
    }

    func unregister(_ link: RemoteLink) {
        guard links[link.host.number, link.session] === link else { return }
        for registration in link.registrations { loop.unregister(registration) }
        link.registrations = []
        links[link.host.number, link.session] = nil
        link.isRegistered = false
        fabric.forgetWork(of: link)
        link.host.creditStalls &+= link.creditStalls
        // The instance (end 0) reads ring 0; the far instance's messages come that way.
        retired.retire(link.region, readers: (link.instance, link.peer))
    }

    /// `peer`'s channels are all up: opens that waited for it start.
    func hostUp(_ peer: FabricPeer) {
        let starting = waitingForHost.filter { $0.link.kind == .remote(host: peer.name) }
        waitingForHost.removeAll { $0.link.kind == .remote(host: peer.name) }
        for pending in starting {
            startSession(instance: pending.instance, link: pending.link, requestID: pending.requestID,
                         waitMilliseconds: pending.waitMilliseconds, deadline: pending.deadline)
        }
    }

    /// `peer` went down: its links report it; starts waiting from it are dropped. Returns how
    /// many links it carried.
    func hostDown(_ peer: FabricPeer) -> Int {
        let affected = links.values.filter { $0.host === peer }
        for link in affected { linkHostDown(link) }
        waitingForInstance.removeAll { $0.peer == peer.name }
        return affected.count
    }
}
