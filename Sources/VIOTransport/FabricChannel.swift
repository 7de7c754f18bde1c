import VIOLinux
import VIOWire

/// What a physical channel between two agents offers; the multiplexer sizes its frames and
/// reports status from it, and never looks at the channel's kind otherwise.
public struct ChannelCapabilities: Sendable, Equatable {
    /// Transport name for status output (`tcp`, `rdma`).
    public var transport: String
    /// Largest frame payload the channel carries: the multiplexer sizes the frames of every
    /// session on it to fit (the smaller of this and what the far agent announced).
    public var maximumFramePayload: Int
    /// Whether bytes are encrypted and authenticated on the wire.
    public var encrypted: Bool

    /// Capabilities.
    public init(transport: String, maximumFramePayload: Int, encrypted: Bool) {
        self.transport = transport
        self.maximumFramePayload = maximumFramePayload
        self.encrypted = encrypted
    }
}

/// Why a channel stopped working. The agent drops the channel and logs this.
public enum ChannelError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A system call failed (connect refused, reset by peer, ...).
    case system(SystemError)
    /// The peer closed its end.
    case closedByPeer
    /// The peer sent something this agent cannot accept.
    case protocolViolation(String)
    /// The secure channel failed: handshake refused (wrong or unknown key), a record that
    /// fails its integrity check (changed, replayed, reordered), or a security mismatch.
    case authentication(String)
    /// The carrier under the channel failed or could not be set up (an RDMA queue pair error,
    /// a refused or unreachable queue pair, no active device): what happened.
    case carrier(String)

    public var description: String {
        switch self {
        case .system(let e): return e.description
        case .closedByPeer: return "the peer closed the connection"
        case .protocolViolation(let why): return "protocol violation: \(why)"
        case .authentication(let why): return "secure channel failed: \(why)"
        case .carrier(let why): return why
        }
    }
}

/// One physical channel to another agent: a reliable, ordered carrier of frames. TCP
/// connections implement it now; RDMA RC queue pairs plug in behind the same calls.
///
/// Used by one thread (the agent's loop). Sending is two-step so the multiplexer can batch
/// frames from many links into one system call: ``enqueue(_:payload:)`` then ``flush()``.
public protocol FabricChannel: AnyObject {
    /// The descriptor the agent's loop watches (readable: frames may have arrived;
    /// writable: queued bytes may be sent or a connect finished). Not watched for a channel
    /// that ``mustBePolled``.
    var descriptor: Int32 { get }
    /// Whether arrivals can only be found by asking (a completion queue with no event
    /// channel, say): the fabric then calls ``receive(budget:place:_:)`` every turn and the
    /// agent's loop does not sleep while such a channel is open. False for descriptor-driven
    /// channels (the default).
    var mustBePolled: Bool { get }
    /// What this channel offers.
    var capabilities: ChannelCapabilities { get }
    /// The far end's address, for logs.
    var peerDescription: String { get }
    /// Whether the connection is established (a dialed channel starts connecting).
    var isConnected: Bool { get }
    /// Completes a pending connect once the descriptor reports an event (writable, for a
    /// socket); throws why it failed. A channel whose connect is still under way (its
    /// descriptor watches several sources) stays not ``isConnected`` and is asked again.
    func finishConnect() throws(ChannelError)
    /// Queues one frame whose payload is `prefix` followed by `payload` (the length is set
    /// from them); nothing is written until ``flush()``. With a `loan`, the channel may send
    /// `payload` in place rather than copy it, and reports the loan's position once written.
    func enqueue(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, loan: PayloadLoan?)
    /// Writes one frame at once when nothing is queued ahead of it and the channel can (a
    /// lone message with no other frame to batch it with: the frame goes one system call
    /// sooner and skips the queue), and queues it as ``enqueue(_:prefix:payload:loan:)``
    /// does otherwise. Returns true when the whole frame was written (its loan, if any, is
    /// reported before returning); false when some of it is queued for ``flush()``. A write
    /// that fails queues the frame, so the next ``flush()`` meets the error.
    func sendNow(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, loan: PayloadLoan?) -> Bool
    /// Bytes queued and not yet written.
    var queuedBytes: Int { get }
    /// Writes queued frames; returns false when the rest waits for writability. True means
    /// all went out, or the rest waits for input (a handshake in progress): the loop flushes
    /// again after the next receive when ``queuedBytes`` is not zero.
    func flush() throws(ChannelError) -> Bool
    /// Reads what has arrived and passes each whole frame to `body`, in order, until no more
    /// bytes are pending, `budget` bytes were read, or `body` returns false. The payload is
    /// valid only during the call. Returns true when it stopped early (call again without
    /// waiting). Throws at end of stream, on errors and on malformed frames.
    ///
    /// For a large frame that has not fully arrived, the channel may ask `place` where its
    /// payload should go; given a placement, it reads the payload straight into it and then
    /// passes the frame to `body` with the placement's memory as the payload.
    func receive(budget: Int, place: (FrameHeader) -> PayloadPlacement?,
                 _ body: (FrameHeader, UnsafeRawBufferPointer) -> Bool) throws(ChannelError) -> Bool
    /// Counters since the channel was created.
    var counters: ChannelCounters { get }
    /// For an authenticated channel, which of the keys it was allowed to accept the peer
    /// proved (index); nil until then, and always for unauthenticated channels.
    var authenticatedPeer: Int? { get }
    /// How the bytes are protected, for status (e.g. the TLS version and suite); nil for a
    /// plaintext channel or before its handshake is done.
    var securityDescription: String? { get }
    /// Ends the channel: the far agent sees it end now, even while this object lingers (in a
    /// work list taken this turn). `reason` is for transports that can tell the far end why.
    func close(reason: String)
    /// The far agent's HELLO was accepted. Until then a channel takes only small frames and
    /// buffers little, so an unauthenticated connection costs a few KiB whatever it announces.
    func admit()
    /// What carries the channel and why, when that can differ from the transport's choice
    /// (an RDMA channel the far host declined, running over TCP); nil otherwise.
    var carrierDescription: String? { get }
}

/// Where a frame's payload is received in place: memory of exactly the frame's payload length
/// (a record reserved in a link's ring), and who owns it, kept alive until the frame is passed on.
public struct PayloadPlacement {
    /// The payload's final place.
    public let destination: UnsafeMutableRawBufferPointer
    /// The memory's owner. When it is a ``PayloadLender``, its ``PayloadLender/lentMemory``
    /// is all the memory `destination` lies in (a transport may register it and move the
    /// payload there without the CPU).
    public let owner: AnyObject

    /// A placement.
    public init(destination: UnsafeMutableRawBufferPointer, owner: AnyObject) {
        self.destination = destination
        self.owner = owner
    }
}

/// Per-channel traffic counters.
public struct ChannelCounters: Sendable, Equatable {
    public var bytesSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var framesSent: UInt64 = 0
    public var framesReceived: UInt64 = 0
    /// Key updates this end asked for (encrypted channels).
    public var keyUpdates: UInt64 = 0
    /// Payloads this end pulled from the far agent's memory by RDMA READ (no CPU copy).
    public var payloadsPulled: UInt64 = 0

    /// Zero counters.
    public init() {}

    /// Adds another channel's counters to these (totals over several channels).
    public mutating func add(_ other: ChannelCounters) {
        bytesSent &+= other.bytesSent; bytesReceived &+= other.bytesReceived
        framesSent &+= other.framesSent; framesReceived &+= other.framesReceived
        keyUpdates &+= other.keyUpdates
        payloadsPulled &+= other.payloadsPulled
    }
}

extension FabricChannel {
    public var mustBePolled: Bool { false }
    public var carrierDescription: String? { nil }

    /// Queues the frame: a channel that cannot write one frame on its own writes it with the
    /// next ``flush()``.
    public func sendNow(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
                        loan: PayloadLoan?) -> Bool {
        enqueue(header, prefix: prefix, payload: payload, loan: loan)
        return false
    }

    /// Queues one frame with a single-part payload.
    public func enqueue(_ header: FrameHeader, payload: UnsafeRawBufferPointer) {
        enqueue(header, prefix: UnsafeRawBufferPointer(start: nil, count: 0), payload: payload, loan: nil)
    }

    /// Receives with every payload buffered by the channel (no placement).
    public func receive(budget: Int, _ body: (FrameHeader, UnsafeRawBufferPointer) -> Bool) throws(ChannelError) -> Bool {
        try receive(budget: budget, place: { _ in nil }, body)
    }

    /// Queues one frame with its payload in an array.
    public func enqueue(_ header: FrameHeader, bytes: [UInt8] = []) {
        bytes.withUnsafeBytes { enqueue(header, payload: $0) }
    }
}
