import Testing
import VIOSharedMemory
import VIOTopology
import VIOTransport
import VIOWire
@testable import VIOAgent

/// The inter-host protocol between real fabrics in one process (``FabricLab``): HELLO and its
/// refusals, sessions, credit, heartbeats and timeouts, reconnection, and frames from a broken
/// or hostile agent. Milliseconds each, no root.
@Suite struct FabricProtocolTests {
    static let pair = labTopology(hosts: ["alpha", "beta"], instances: """
          - { name: a1, host: alpha }
          - { name: a2, host: alpha }
          - { name: b1, host: beta }
          - { name: b2, host: beta }
        """, links: """
          - between: [a1, b1]
          - between: [a2, b2]
        """, defaults: "  channels: 1\n  ring_size: 64KiB\n")

    /// The session id of a1 <-> b1 and a1's destination id, derived from the names.
    static let a1b1 = FabricIdentifiers.session(between: "a1", and: "b1")
    static let a1 = FabricIdentifiers.instance("a1")

    func attachAll(_ lab: FabricLab) {
        lab["alpha"].attach("a1"); lab["alpha"].attach("a2")
        lab["beta"].attach("b1"); lab["beta"].attach("b2")
    }

    /// The pair with every instance attached and both hosts up.
    func connectedPair(sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> FabricLab {
        let lab = try FabricLab(Self.pair)
        attachAll(lab)
        try #require(lab.connect(), sourceLocation: sourceLocation)
        return lab
    }

    @Test func linkOpensAndCarriesMessagesBothWays() throws {
        let lab = try connectedPair()
        let (a1, b1) = try lab.open("a1", on: "alpha", to: "b1", on: "beta")
        for i in 0..<50 {
            try a1.send(Array("ping \(i)".utf8))
            #expect(try lab.receive(on: b1) == Array("ping \(i)".utf8))
            // Large enough to be fragmented by the far agent's frame size.
            let reply = [UInt8](repeating: UInt8(i), count: 40_000)
            try b1.send(reply)
            #expect(try lab.receive(on: a1) == reply)
        }
        let status = lab["alpha"].fabric.peerStates()
        #expect(status.first?.state == "up" && status.first?.transport == "memory: lab")
    }

    /// Frames fit the channel: a transport that carries at most 4 KiB per frame gets every
    /// message in frames that size, both ways, and the messages arrive whole.
    @Test func framesFitWhatTheChannelCarries() throws {
        let lab = try FabricLab(Self.pair, maximumFramePayload: 4096)
        attachAll(lab)
        #expect(lab.connect())
        let (a1, b1) = try lab.open("a1", on: "alpha", to: "b1", on: "beta")
        for side in ["alpha", "beta"] {
            let link = try #require(lab[side].fabric.sessions.links.values.first)
            #expect(link.peerMaxFramePayload <= 4096 - 8 && link.maxFramePayload <= 4096 - 8)
        }
        // A health answer fits here...
        #expect(lab["alpha"].fabric.requestHealth(of: "beta", for: 1) == nil)
        #expect(lab.run(until: { !lab["alpha"].healthReplies.isEmpty }, rounds: 50))
        if case .success(let status)? = lab["alpha"].healthReplies.first { #expect(status.host == "beta") } else { Issue.record("no status") }
        // ...not on a channel of 96-byte frames: it is not sent, and the asker hears why.
        let tiny = try FabricLab(Self.pair, maximumFramePayload: 96)
        #expect(tiny.connect())
        #expect(tiny["alpha"].fabric.requestHealth(of: "beta", for: 1) == nil)
        tiny.run(rounds: 50)
        #expect(tiny["alpha"].log.contains("cannot answer a health request: its status is"), "\(tiny["alpha"].log.all)")
        let message = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try a1.send(message)
        #expect(try lab.receive(on: b1) == message)
        try b1.send(message)
        #expect(try lab.receive(on: a1) == message)
    }

    /// A transport whose channels must be polled (no descriptor says when frames arrive): the
    /// multiplexer receives from them every turn and the pair works as any other; the turn
    /// reports more work while such a channel is open, so the agent's loop never sleeps on it.
    @Test func polledChannelsCarryLinks() throws {
        let lab = try FabricLab(Self.pair, polled: true)
        attachAll(lab)
        #expect(lab.connect())
        let slot = try #require(lab["alpha"].fabric.channels.slots.first)
        #expect(slot.registration == nil && lab["alpha"].fabric.polledChannels.count == 1)
        let (a1, b1) = try lab.open("a1", on: "alpha", to: "b1", on: "beta")
        for i in 0..<20 {
            try a1.send([UInt8(i)])
            #expect(try lab.receive(on: b1) == [UInt8(i)])
            try b1.send([UInt8(i), 1])
            #expect(try lab.receive(on: a1) == [UInt8(i), 1])
        }
        #expect(lab["alpha"].fabric.finishTurn())
    }

    /// An orderly close travels as the session's end of data and close: the far instance gets
    /// everything sent before it, then "peer closed"; both sessions end and leave the tables.
    @Test func closeArrivesAfterTheData() throws {
        let lab = try connectedPair()
        let (a1, b1) = try lab.open("a1", on: "alpha", to: "b1", on: "beta")
        let alphaLink = try #require(lab["alpha"].fabric.sessions.links.values.first)
        #expect(alphaLink.machine.state == .open)
        for i in 0..<3 { try a1.send([UInt8(i)]) }
        a1.close()
        for i in 0..<3 { #expect(try lab.receive(on: b1) == [UInt8(i)]) }
        #expect(throws: LinkError.peerClosed(peer: "a1")) { try lab.receive(on: b1) }
        #expect(alphaLink.machine.state == .closed)
        #expect(lab.run(until: { lab["alpha"].fabric.sessions.links.values.first == nil && lab["beta"].fabric.sessions.links.values.first == nil }))
    }

    /// Connections that never say HELLO cannot keep a real peer out: beyond the 64 that may
    /// wait, the longest-waiting one is dropped, so the peer's channels get in at once.
    @Test func silentConnectionsCannotKeepAPeerOut() throws {
        let lab = try FabricLab(Self.pair)
        attachAll(lab)
        let stranger = try MemoryTransport(network: lab.network, listen: nil, identity: nil, acceptedKeys: [])
        let beta = lab["beta"].fabric.view.host
        var silent: [any FabricChannel] = []
        for _ in 0..<80 {
            silent.append(try stranger.dial(TransportPeer(name: "stranger", address: beta.address, port: beta.port, key: nil)))
        }
        // alpha (which dials beta) gets both its channels up well before the silent ones'
        // HELLO deadline (the peer timeout, 1 s) could have made room.
        #expect(lab.run(until: { lab["alpha"].fabric.channels.peers["beta"]!.isUp }, rounds: 100))
        #expect(lab["beta"].fabric.channels.slots.filter { $0.peer == nil }.count <= ChannelManager.maximumPendingChannels)
        #expect(lab["beta"].log.contains("fabric connections dropped: too many waiting for HELLO"))
        _ = silent
    }

    /// A second OPEN_LINK for a link whose first is still waiting for the peer host is refused
    /// (libvio never sends one; another client could): one link comes up, none is left behind.
    @Test func aSecondOpenWhileTheHostIsDownIsRefused() throws {
        let lab = try FabricLab(Self.pair)
        attachAll(lab)
        let alpha: Fabric = lab["alpha"].fabric
        let declared = try #require(alpha.view.link(between: "a1", and: "b1"))
        #expect(alpha.openLink(instance: "a1", link: declared, requestID: 1, waitMilliseconds: 10_000) == nil)
        #expect(alpha.openLink(instance: "a1", link: declared, requestID: 2, waitMilliseconds: 10_000)?.code == .alreadyOpen)
        #expect(lab.connect())
        #expect(lab.run(until: { lab["alpha"].delivered["a1"]?.count == 1 && lab["beta"].delivered["b1"]?.count == 1 }))
        lab.run(rounds: 50)
        #expect(lab["alpha"].delivered["a1"]?.count == 1 && lab["alpha"].refusals.isEmpty)
    }

    /// The far agent closing a session this end is still opening answers the waiting
    /// OPEN_LINK (it used to wait for ever with an infinite timeout).
    @Test func aCloseBeforeAcceptanceAnswersTheOpen() throws {
        let lab = try FabricLab(Self.pair)
        lab["alpha"].attach("a1")
        #expect(lab.connect())
        let declared = try #require(lab["alpha"].fabric.view.link(between: "a1", and: "b1"))
        #expect(lab["alpha"].fabric.openLink(instance: "a1", link: declared, requestID: 1, waitMilliseconds: UInt32.max) == nil)
        lab.run(rounds: 20)
        let wire = try #require(lab.network.wires.last)
        wire.inject(Frame(FrameHeader(type: .session, flags: .close, session: Self.a1b1, destination: Self.a1), payload: []).encoded(), toSide: 0)
        #expect(lab.run(until: { !lab["alpha"].refusals.isEmpty }, rounds: 50))
        #expect(lab["alpha"].refusals.first?.error.message.contains("closed the link before accepting it") == true)
        #expect(lab["alpha"].fabric.sessions.links.values.first == nil)
    }

    /// A HELLO from an agent whose file differs in what the pair needs (here, the pair's
    /// security) is refused with the reason, and the pair never comes up.
    @Test func pairsThatDisagreeOnTheirChannelsAreRefused() throws {
        let other = Self.pair + "host_pairs:\n  - { between: [alpha, beta], security: plaintext }\n"
        let lab = try FabricLab(Self.pair, topologies: ["alpha": other])
        #expect(!lab.connect())
        #expect(lab["beta"].log.contains("the two topology files differ"), "\(lab["beta"].log.all)")
        #expect(lab["alpha"].log.contains("the far agent refused the channel"), "\(lab["alpha"].log.all)")
    }

    /// Files that differ elsewhere work together: links both declare alike open and carry
    /// messages; a link only one declares, or declared differently, is refused at open with
    /// the reason, and the pair stays up.
    @Test func differingFilesCarryTheLinksTheyShare() throws {
        let alphaFile = labTopology(hosts: ["alpha", "beta", "gamma"], instances: """
              - { name: a1, host: alpha }
              - { name: a2, host: alpha }
              - { name: a3, host: alpha }
              - { name: b1, host: beta }
              - { name: b2, host: beta }
              - { name: b3, host: beta }
              - { name: g1, host: gamma }
            """, links: """
              - between: [a3, b3]
              - between: [a1, b1]
              - between: [a2, b2]
                max_message_size: 1MiB
            """, defaults: "  channels: 1\n  ring_size: 64KiB\n")
        let lab = try FabricLab(Self.pair, topologies: ["alpha": alphaFile])
        attachAll(lab)
        lab["alpha"].attach("a3")
        #expect(lab.run(until: { lab["alpha"].fabric.channels.peers["beta"]!.isUp && lab["beta"].fabric.channels.peers["alpha"]!.isUp }))
        let (a1, b1) = try lab.open("a1", on: "alpha", to: "b1", on: "beta")
        try a1.send([1, 2, 3])
        #expect(try lab.receive(on: b1) == [1, 2, 3])
        for (from, to, reason) in [("a3", "b3", "no link 'a3' <-> 'b3' is declared in the topology of host 'beta'"),
                                   ("a2", "b2", "declared differently on the two hosts: max_message_size 1MiB on 'alpha', 64MiB on 'beta'")] {
            let declared = try #require(lab["alpha"].fabric.view.link(between: from, and: to))
            #expect(lab["alpha"].fabric.openLink(instance: from, link: declared, requestID: 9, waitMilliseconds: 1000) == nil)
            #expect(lab.run(until: { lab["alpha"].refusals.contains { $0.instance == from } }, rounds: 100))
            let refusal = lab["alpha"].refusals.first { $0.instance == from }
            #expect(refusal?.error.code == .undeclaredLink && refusal?.error.message.contains(reason) == true, "\(String(describing: refusal))")
        }
        try b1.send([4])
        #expect(try lab.receive(on: a1) == [4])
        #expect(lab["alpha"].fabric.channels.peers["beta"]!.reconnects == 0)
        // Each side reports where the two files differ on what the pair shares.
        #expect(lab["alpha"].fabric.peerStates().first?.differences == [
            "link 'a2' <-> 'b2': max_message_size 1048576 bytes here, 67108864 on 'beta'",
            "link 'a3' <-> 'b3' is declared here, not on 'beta'"])
        #expect(lab["beta"].fabric.peerStates().first?.differences == [
            "link 'a2' <-> 'b2': max_message_size 67108864 bytes here, 1048576 on 'alpha'",
            "link 'a3' <-> 'b3' is declared on 'alpha', not here"])
    }

    /// An agent that cannot prove the key the topology gives its host (an impostor) gets no
    /// channel on an encrypted pair.
    @Test func anImpostorIsRefused() throws {
        let lab = try FabricLab(Self.pair, identities: ["alpha": [UInt8](repeating: 7, count: 32)])
        #expect(!lab.connect())
        #expect(lab["beta"].log.contains("is encrypted (security: tls), but this channel is not authenticated"), "\(lab["beta"].log.all)")
    }

    /// One receiver stops reading: its link runs out of credit and its sender blocks, while
    /// the other link on the same channel keeps flowing; once the reader reads, the first
    /// link resumes with nothing lost.
    @Test func aStoppedReaderStallsOnlyItsLink() throws {
        let lab = try connectedPair()
        let (a1, b1) = try lab.open("a1", on: "alpha", to: "b1", on: "beta")
        let (a2, b2) = try lab.open("a2", on: "alpha", to: "b2", on: "beta")
        var sent = 0
        let message = [UInt8](repeating: 1, count: 1000)
        func trySend() -> Bool { (try? a1.send(message, timeout: .zero)) != nil }
        // Fill a1's ring, the credit and b1's ring: sends stop succeeding.
        while sent < 10_000 {
            if !trySend() {
                lab.run(rounds: 20)
                if !trySend() { break }
            }
            sent += 1
            lab.run(rounds: 1)
        }
        #expect(sent > 64 && sent < 10_000, "sent \(sent)")
        let link = try #require(lab["alpha"].fabric.sessions.links.values.first { $0.instance == "a1" })
        #expect(link.creditStalls > 0)
        for i in 0..<20 {
            try a2.send([UInt8(i)])
            #expect(try lab.receive(on: b2) == [UInt8(i)])
        }
        for _ in 0..<sent { #expect(try lab.receive(on: b1) == message) }
        try a1.send([42])
        #expect(try lab.receive(on: b1) == [42])
    }

    /// Heartbeats keep an idle pair up; a cut network is noticed after the peer timeout
    /// (links report the host down, with what may be lost), and the dialer reconnects once the
    /// network is back, after which links open again.
    @Test func peerTimeoutThenReconnect() throws {
        let lab = try connectedPair()
        let (a1, b1) = try lab.open("a1", on: "alpha", to: "b1", on: "beta")
        // Idle for three peer timeouts: heartbeats keep it up.
        lab.run(stepMilliseconds: 10, rounds: 300)
        #expect(lab["alpha"].fabric.channels.peers["beta"]!.isUp)
        #expect(lab["alpha"].fabric.channels.peers["beta"]!.rttMicroseconds < 1_000_000)
        lab.network.partition()
        try a1.send([1])
        let down = lab.run(until: { lab["alpha"].fabric.channels.peers["beta"]!.isUp == false }, stepMilliseconds: 10, rounds: 300)
        #expect(down)
        #expect(throws: LinkError.peerHostDown(peer: "b1", host: "beta", possiblyLost: 1)) { try a1.receive(timeout: .zero) }
        #expect(throws: LinkError.self) { try b1.receive(timeout: .zero) }
        lab.network.reachable = true
        #expect(lab.run(until: { lab["alpha"].fabric.channels.peers["beta"]!.isUp && lab["beta"].fabric.channels.peers["alpha"]!.isUp },
                        stepMilliseconds: 10, rounds: 1000))
        #expect(lab["alpha"].fabric.channels.peers["beta"]!.reconnects == 1)
        let (again1, againB1) = try lab.open("a1", on: "alpha", to: "b1", on: "beta")
        try again1.send([2])
        #expect(try lab.receive(on: againB1) == [2])
    }

    /// Frames a broken or hostile agent sends on an established channel: one that breaks a
    /// session's stream ends that session only; one that cannot apply is refused; one that
    /// breaks the framing ends the channel (and the pair reconnects).
    @Test func hostileFramesEndOnlyWhatTheyBreak() throws {
        let lab = try connectedPair()
        let (_, b1) = try lab.open("a1", on: "alpha", to: "b1", on: "beta")
        let (a2, b2) = try lab.open("a2", on: "alpha", to: "b2", on: "beta")
        let wire = try #require(lab.network.wires.last)
        // Beta accepted the wire: it is side 1.
        wire.inject(Frame(FrameHeader(type: .data, session: Self.a1b1, destination: FabricIdentifiers.instance("b1"), sequence: 99), payload: [1]).encoded(), toSide: 1)
        lab.run(rounds: 20)
        #expect(throws: LinkError.self) { try b1.receive(timeout: .zero) }
        #expect(lab["beta"].log.contains("session ended: the far agent broke its protocol"))
        #expect(lab["alpha"].log.contains("link reset by the far agent"), "\(lab["alpha"].log.all)")
        try a2.send([7])
        #expect(try lab.receive(on: b2) == [7])
        // A frame for no session of this pair: refused, nothing else changes.
        wire.inject(Frame(FrameHeader(type: .acknowledgement, session: 77), payload: []).encoded(), toSide: 1)
        lab.run(rounds: 20)
        #expect(lab["beta"].log.contains("frame refused"))
        #expect(lab["alpha"].log.contains("refused a acknowledgement frame"), "\(lab["alpha"].log.all)")
        try a2.send([8])
        #expect(try lab.receive(on: b2) == [8])
        // Broken framing: the channel goes, the pair comes back.
        var bad = Frame(FrameHeader(type: .heartbeatRequest), payload: []).encoded()
        bad[0] = 9
        wire.inject(bad, toSide: 1)
        #expect(lab.run(until: { lab["beta"].log.contains("invalid frame version: 9") }, rounds: 50))
        #expect(throws: LinkError.self) { try b2.receive(timeout: .zero) }
        #expect(lab.run(until: { lab["alpha"].fabric.channels.peers["beta"]!.reconnects == 1 && lab["alpha"].fabric.channels.peers["beta"]!.isUp },
                        stepMilliseconds: 10, rounds: 1000))
    }

    /// A far agent acknowledging more messages than it was sent would hide what a host loss
    /// may lose: the session ends instead.
    @Test func acknowledgingMoreThanWasSentEndsTheSession() throws {
        let lab = try connectedPair()
        let (a1, b1) = try lab.open("a1", on: "alpha", to: "b1", on: "beta")
        try a1.send([1])
        #expect(try lab.receive(on: b1) == [1])
        let wire = try #require(lab.network.wires.last)
        var count = UInt64(1 << 40).littleEndian
        let payload = withUnsafeBytes(of: &count) { Array($0) }
        wire.inject(Frame(FrameHeader(type: .acknowledgement, session: Self.a1b1, destination: Self.a1), payload: payload).encoded(), toSide: 0)
        #expect(lab.run(until: { lab["alpha"].fabric.sessions.links.values.first == nil }, rounds: 50))
        #expect(lab["alpha"].log.contains("acknowledged 1099511627776 messages, 1 were sent"), "\(lab["alpha"].log.all)")
        #expect(throws: LinkError.self) { try a1.send([2], timeout: .zero) }
    }

    /// An event the session's state does not allow (the far agent ends its data on a session
    /// that is still opening) is refused with a control frame and the state kept.
    @Test func invalidTransitionIsRefusedAndTheStateKept() throws {
        let lab = try FabricLab(Self.pair)
        lab["alpha"].attach("a1")
        #expect(lab.connect())
        let declared = try #require(lab["alpha"].fabric.view.link(between: "a1", and: "b1"))
        // b1 is not attached: the open waits for it, the session stays in its initial state.
        #expect(lab["alpha"].fabric.openLink(instance: "a1", link: declared, requestID: 1, waitMilliseconds: 60_000) == nil)
        lab.run(rounds: 20)
        let wire = try #require(lab.network.wires.last)
        wire.inject(Frame(FrameHeader(type: .session, flags: [.dataEnd, .close], session: Self.a1b1, destination: Self.a1), payload: []).encoded(), toSide: 0)
        lab.run(rounds: 20)
        #expect(lab["alpha"].log.contains("event 'readDataEnd' is not valid in session state 'initial'"), "\(lab["alpha"].log.all)")
        let link = try #require(lab["alpha"].fabric.sessions.links.values.first)
        #expect(link.machine.state == .initial && !link.isOpen)
        // The open still completes when b1 attaches.
        lab["beta"].attach("b1")
        #expect(lab.run(until: { lab["alpha"].delivered["a1"]?.isEmpty == false }))
    }
}
