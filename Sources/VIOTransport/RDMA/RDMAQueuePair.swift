import CVIORDMA

/// One RDMA RC queue pair carrying a byte stream in registered buffers (the protocol is in
/// `CVIORDMA.h` and docs/rdma.md): set up with librdmacm, driven by two descriptors the
/// owner watches, with credit so a receive buffer is always posted for what is sent.
final class RDMAQueuePair {
    private let handle: OpaquePointer

    enum State: Equatable {
        case connecting, established
        /// The peer disconnected, or the set-up or queue pair failed: why.
        case closed(String), failed(String)
    }

    /// Starts connecting from `source` to `destination`:`port` with `privateData` in the
    /// request (the ticket the far agent handed out).
    init(dialingFrom source: String, to destination: String, port: UInt16, privateData: [UInt8]) throws(ChannelError) {
        var error = [CChar](repeating: 0, count: 256)
        guard let h = vio_rdma_dial(source, destination, port, privateData, privateData.count, &error, error.count) else {
            throw .carrier(text(error))
        }
        handle = h
    }

    /// Accepts a request taken from an ``RDMAListener``.
    init(accepting request: OpaquePointer) throws(ChannelError) {
        var error = [CChar](repeating: 0, count: 256)
        guard let h = vio_rdma_accept(request, &error, error.count) else {
            throw .carrier(text(error))
        }
        handle = h
    }

    deinit { vio_rdma_free(handle) }

    /// Disconnects and destroys the queue pair now (the far end sees it close); the rest goes
    /// when the last registration of this queue pair does.
    func shutdown() { vio_rdma_shutdown(handle) }

    /// Readable when connection events wait.
    var eventDescriptor: Int32 { vio_rdma_event_fd(handle) }
    /// Readable when completions wait; nil until the queue pair exists.
    var completionDescriptor: Int32? {
        let fd = vio_rdma_completion_fd(handle)
        return fd < 0 ? nil : fd
    }

    /// Handles pending connection events and completions.
    @discardableResult
    func progress() -> State {
        decode(vio_rdma_progress(handle))
    }

    var state: State { decode(vio_rdma_state(handle)) }

    private func decode(_ raw: Int32) -> State {
        switch Int(raw) {
        case Int(VIO_RDMA_CONNECTING): .connecting
        case Int(VIO_RDMA_ESTABLISHED): .established
        case Int(VIO_RDMA_CLOSED): .closed(String(cString: vio_rdma_error(handle)))
        default: .failed(String(cString: vio_rdma_error(handle)))
        }
    }

    /// Device, port, queue pair number and MTU, for logs and status.
    var description: String {
        var out = [CChar](repeating: 0, count: 160)
        return String(cString: vio_rdma_describe(handle, &out, out.count))
    }

    /// Size of one send buffer: the most one message carries.
    static let bufferBytes = Int(VIO_RDMA_SLOT_BYTES)

    /// A free send buffer to fill, or nil while credit or buffers are short (a completion
    /// that frees one makes the completion descriptor readable).
    func sendBuffer() -> UnsafeMutableRawBufferPointer? {
        guard let p = vio_rdma_send_buffer(handle) else { return nil }
        return UnsafeMutableRawBufferPointer(start: p, count: Self.bufferBytes)
    }

    /// Sends the first `count` bytes of the buffer ``sendBuffer()`` returned.
    func send(_ count: Int) throws(ChannelError) {
        guard vio_rdma_send(handle, count) == 0 else { throw .carrier(String(cString: vio_rdma_error(handle))) }
    }

    /// The oldest received message's unread bytes, nil when none waits.
    func received() -> UnsafeMutableRawBufferPointer? {
        var count = 0
        guard let p = vio_rdma_received(handle, &count) else { return nil }
        return UnsafeMutableRawBufferPointer(start: p, count: count)
    }

    /// Marks `count` bytes of ``received()`` read; a message read to its end is reposted.
    func consume(_ count: Int) throws(ChannelError) {
        guard vio_rdma_consume(handle, count) == 0 else { throw .carrier(String(cString: vio_rdma_error(handle))) }
    }

    /// Registers `memory` with this queue pair's protection domain (for the peer to read it
    /// too, with `remoteRead`).
    func register(_ memory: UnsafeRawBufferPointer, remoteRead: Bool) throws(ChannelError) -> MemoryRegistration {
        var error = [CChar](repeating: 0, count: 256)
        guard let mr = vio_rdma_register(handle, UnsafeMutableRawPointer(mutating: memory.baseAddress), memory.count,
                                         remoteRead ? 1 : 0, &error, error.count) else {
            throw .carrier(text(error))
        }
        return MemoryRegistration(mr, memory: memory, queuePair: self)
    }

    /// Pulls `count` bytes at `remote` (`rkey`) of the peer's memory into `local` (within
    /// `registration`); up to ``readsInFlight`` at once, their ends seen by ``readsFinished()``.
    /// Only a `signal`led READ raises a completion, for itself and every READ before it.
    func read(into local: UnsafeMutableRawPointer, _ registration: MemoryRegistration, from remote: UInt64, rkey: UInt32,
              count: Int, signal: Bool) throws(ChannelError) {
        guard vio_rdma_read(handle, local, registration.handle, remote, rkey, UInt32(count), signal ? 1 : 0) == 0 else {
            throw .carrier(String(cString: vio_rdma_error(handle)))
        }
    }

    /// READs that completed since the last call (in the order posted).
    func readsFinished() -> Int { Int(vio_rdma_reads_finished(handle)) }

    /// READs that may be in flight at once.
    static let readsInFlight = Int(VIO_RDMA_READS)

}

/// Where an agent takes RDMA connect requests: bound to the host's topology address, which
/// an active RDMA port must serve (that is the check `transport: auto` makes).
final class RDMAListener {
    private let handle: OpaquePointer

    /// Binds and listens; throws with the reason when no active RDMA port serves `address`.
    init(address: String, port: UInt16 = 0) throws(ChannelError) {
        var error = [CChar](repeating: 0, count: 256)
        guard let h = vio_rdma_listen(address, port, &error, error.count) else {
            throw .carrier(text(error))
        }
        handle = h
    }

    deinit { vio_rdma_listener_free(handle) }

    var descriptor: Int32 { vio_rdma_listener_fd(handle) }
    var port: UInt16 { vio_rdma_listener_port(handle) }
    var description: String {
        var out = [CChar](repeating: 0, count: 128)
        return String(cString: vio_rdma_listener_describe(handle, &out, out.count))
    }

    /// The next connect request and its private data; nil when none waits.
    func next() throws(ChannelError) -> (request: OpaquePointer, privateData: [UInt8])? {
        var request: OpaquePointer?
        var data = [UInt8](repeating: 0, count: Int(VIO_RDMA_PRIVATE_MAX))
        var count = 0
        var error = [CChar](repeating: 0, count: 256)
        switch vio_rdma_listener_next(handle, &request, &data, &count, &error, error.count) {
        case 1: return (request!, Array(data[..<count]))
        case 0: return nil
        default: throw .carrier(text(error))
        }
    }

    /// Refuses a request.
    static func reject(_ request: OpaquePointer) { vio_rdma_reject(request) }
}

/// A C string filled in by CVIORDMA, up to its terminator.
private func text(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Memory registered with a queue pair's protection domain; deregistered when released.
final class MemoryRegistration {
    fileprivate let handle: OpaquePointer
    /// The registered bytes.
    let memory: UnsafeRawBufferPointer
    /// Kept alive until this is deregistered: its protection domain cannot go first.
    private let queuePair: RDMAQueuePair

    fileprivate init(_ handle: OpaquePointer, memory: UnsafeRawBufferPointer, queuePair: RDMAQueuePair) {
        self.handle = handle
        self.memory = memory
        self.queuePair = queuePair
    }

    deinit { vio_rdma_deregister(handle) }

    var remoteKey: UInt32 { vio_rdma_rkey(handle) }

    func contains(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = memory.baseAddress, let start = bytes.baseAddress else { return false }
        return start >= base && start + bytes.count <= base + memory.count
    }
}
