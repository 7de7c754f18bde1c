import VIOLinux
import VIOWire

/// A ``FabricChannel`` over one TCP connection: frames are copied into one output buffer and
/// written with as few `send` calls as the socket allows; input is read straight into the
/// frame decoder's buffer.
public final class TCPChannel: FabricChannel {
    private let socket: TCPSocket
    private var connected: Bool
    private let output = ByteQueue()
    private var decoder = FrameDecoder()
    public private(set) var counters = ChannelCounters()
    public let capabilities = ChannelCapabilities(transport: "tcp", maximumFramePayload: FrameHeader.maximumPayload,
                                                  encrypted: false)
    /// Where the channel goes (dialed) or comes from (accepted), for logs.
    public let peerAddress: String

    /// Starts connecting to `address` (non-blocking; the loop waits for writability).
    public static func dial(_ address: TCPSocket.Address) throws(ChannelError) -> TCPChannel {
        do {
            return TCPChannel(try TCPSocket.connect(to: address), connected: false, peer: "\(address)")
        } catch {
            throw .system(error)
        }
    }

    /// Wraps an accepted connection.
    public init(accepted socket: consuming TCPSocket, peer: String) {
        self.socket = socket
        connected = true
        peerAddress = peer
        try? self.socket.setNoDelay()
    }

    private init(_ socket: consuming TCPSocket, connected: Bool, peer: String) {
        self.socket = socket
        self.connected = connected
        peerAddress = peer
    }

    public var descriptor: Int32 { socket.fd.rawValue }
    public var peerDescription: String { peerAddress }
    public var isConnected: Bool { connected }

    public func finishConnect() throws(ChannelError) {
        guard !connected else { return }
        if let error = socket.pendingError() {
            throw .system(SystemError("connect", error, detail: peerAddress))
        }
        connected = true
        try? socket.setNoDelay()
    }

    public func enqueue(_ header: FrameHeader, prefix: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) {
        var h = header
        h.length = UInt32(prefix.count + payload.count)
        h.store(to: output.extend(by: FrameHeader.size))
        output.append(prefix)
        output.append(payload)
        counters.framesSent &+= 1
    }

    public var queuedBytes: Int { output.count }

    public func flush() throws(ChannelError) -> Bool {
        guard connected else { return output.count == 0 }
        while output.count > 0 {
            let written: Int?
            do { written = try socket.write(output.bytes) } catch { throw .system(error) }
            guard let n = written else { return false }
            output.consume(n)
            counters.bytesSent &+= UInt64(n)
        }
        return true
    }

    public func receive(budget: Int, _ body: (FrameHeader, UnsafeRawBufferPointer) -> Bool) throws(ChannelError) -> Bool {
        var read = 0
        while true {
            // Frames already buffered first: a previous call may have stopped early.
            while true {
                let more: Bool?
                do {
                    more = try decoder.nextFrame { header, payload in body(header, payload) }
                } catch {
                    throw .protocolViolation("\(error)")
                }
                guard let more else { break }
                counters.framesReceived &+= 1
                if !more { return true }
            }
            if read >= budget { return true }
            let n: Int?
            do {
                n = try decoder.fill { buffer throws(SystemError) in try socket.read(into: buffer) }
            } catch {
                throw .system(error)
            }
            guard let n else { return false }
            if n == 0 { throw .closedByPeer }
            read += n
            counters.bytesReceived &+= UInt64(n)
        }
    }
}
