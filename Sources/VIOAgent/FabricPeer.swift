import VIOLinux
import VIOTopology
import VIOTransport
import VIOWire

/// One physical channel as the fabric tracks it.
final class ChannelSlot: WorkListed {
    /// On the agent's loop (nil only if watching it failed).
    var registration: Registration?
    let channel: any FabricChannel
    /// The peer host, once known (an accepted channel learns it from HELLO).
    var peer: FabricPeer?
    /// Which of the peer's channels this is.
    var index: Int
    /// HELLO exchanged: frames other than HELLO may flow (set by ``markReady()``).
    private(set) var ready = false
    /// Watching for writability (connect pending or output backed up).
    var watchingWritable: Bool
    /// Dial or accept time, for the handshake timeout.
    let createdAt: UInt64
    var lastReceived: UInt64
    var lastSent: UInt64
    /// The channel's carrier as last logged (``FabricChannel/carrierDescription``).
    var carrier: String?
    /// Links waiting for this channel's output to drain before they may queue more.
    var waitingLinks: [RemoteLink] = [] { didSet { hasWaiters = !waitingLinks.isEmpty || !waitingStreams.isEmpty } }
    /// Proxied connections waiting for the same (``ProxyManager/channelDrained(_:)``).
    var waitingStreams: [ProxyStream] = [] { didSet { hasWaiters = !waitingLinks.isEmpty || !waitingStreams.isEmpty } }
    /// Whether either list has anyone: the one flag each flush reads.
    private(set) var hasWaiters = false
    /// Still one of the fabric's channels (false once dropped).
    var isLive = true
    var lists: WorkLists = []

    /// Tells the far agent `text` in a control frame at once, ahead of closing the channel or
    /// stopping (best effort: the socket may be full).
    func tellNow(_ text: String) {
        channel.enqueue(FrameHeader(type: .control), bytes: Array(text.utf8))
        _ = try? channel.flush()
    }

    /// HELLO exchanged: the channel takes full-size frames from now on.
    func markReady() {
        ready = true
        channel.admit()
    }

    /// The largest frame payload the channel carries (read once: the capability is computed).
    let frameLimit: Int

    init(channel: any FabricChannel, peer: FabricPeer?, index: Int, now: UInt64) {
        frameLimit = channel.capabilities.maximumFramePayload
        self.channel = channel
        self.peer = peer
        self.index = index
        watchingWritable = !channel.isConnected
        createdAt = now
        lastReceived = now
        lastSent = now
    }
}

/// The fabric towards one other host: its K channels, reconnection, and statistics.
final class FabricPeer {
    let host: Host
    /// This agent's number for the peer (unique for the agent's life): session ids are per
    /// host pair, so the session table keys links by peer number and session id.
    let number: UInt32
    /// ``TopologyFingerprint`` of what the pair must agree on (``Topology/pairIdentity(_:_:)``),
    /// compared in HELLO.
    let fingerprint: UInt64
    /// Whether this agent dials (otherwise it only accepts).
    let dials: Bool
    let channelCount: Int
    var slots: [ChannelSlot?]
    /// When each missing channel may be dialed again.
    var nextAttempt: [UInt64]
    var backoffMilliseconds: UInt64 = ChannelManager.initialBackoffMilliseconds
    var wasUp = false
    var isUp = false
    var rttMicroseconds: UInt32 = 0
    /// Round trips measured since the metrics last took them (at most ``maximumRTTSamples``).
    var rttSamples: [UInt32] = []
    static let maximumRTTSamples = 1024
    var reconnects: UInt64 = 0
    var lastError = ""
    /// Where the peer's topology differs from this host's on what the pair shares (from its
    /// last DECLARATIONS frame).
    var differences: [String] = []
    /// The peer's last DECLARATIONS, compared again after this host reloads.
    var declarations: PairDeclarations?
    /// Counters of channels already closed, so status totals survive reconnects.
    var retired = ChannelCounters()
    var creditStalls: UInt64 = 0

    /// How the channels to this host are protected.
    let security: Security
    /// What carries the channels, and why it was chosen.
    let transport: any FabricTransport
    let transportReason: String

    init(host: Host, number: UInt32, dials: Bool, channels: Int, security: Security, transport: any FabricTransport,
         transportReason: String, fingerprint: UInt64) {
        self.host = host
        self.number = number
        self.fingerprint = fingerprint
        self.dials = dials
        self.security = security
        self.transport = transport
        self.transportReason = transportReason
        channelCount = max(1, channels)
        slots = Array(repeating: nil, count: channelCount)
        nextAttempt = Array(repeating: 0, count: channelCount)
    }

    var name: String { host.name }

    /// The peer as its channels are made (a reload compares the file's declaration with it).
    var asDeclared: PeerHost {
        PeerHost(host: host, weDial: dials, channels: channelCount, linkCount: 0, security: security)
    }
    var readyCount: Int { slots.reduce(0) { $0 + (($1?.ready ?? false) ? 1 : 0) } }

    /// The channel a session's frames travel on: fixed per session so a link stays in order.
    static func channelIndex(session: UInt32, channels: Int) -> Int { Int(session % UInt32(channels)) }

    /// Channel `index` when the host is up and the channel ready (a dropped channel leaves
    /// ``slots``, so one found here is live).
    func readySlot(_ index: Int) -> ChannelSlot? {
        guard isUp, let slot = slots[index], slot.ready else { return nil }
        return slot
    }

    /// Traffic totals over current and closed channels.
    var totals: ChannelCounters {
        var t = retired
        for slot in slots.compactMap({ $0 }) { t.add(slot.channel.counters) }
        return t
    }

    func retire(_ slot: ChannelSlot) {
        retired.add(slot.channel.counters)
    }
}
