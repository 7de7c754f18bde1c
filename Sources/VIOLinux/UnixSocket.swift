import CVIOShim
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The credentials the kernel records for the process at the other end of a Unix socket.
public struct PeerCredentials: Sendable, Equatable {
    /// Process id at connect time.
    public var pid: Int32
    /// Effective uid.
    public var uid: UInt32
    /// Effective gid.
    public var gid: UInt32
}

/// A `SOCK_SEQPACKET` Unix socket: reliable, ordered, message boundaries kept, and able to
/// carry file descriptors. The agent's control channel is built on it.
public struct UnixSocket: ~Copyable, Sendable {
    /// The owned descriptor.
    public let fd: OwnedFileDescriptor

    /// Wraps an already-open socket.
    public init(_ fd: consuming OwnedFileDescriptor) { self.fd = fd }

    /// The largest control message either side sends.
    public static let maximumMessage = 64 * 1024
    /// The most descriptors one message carries.
    public static let maximumDescriptors = 16

    private static func address(_ path: String) throws(SystemError) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else {
            throw SystemError("socket path", Errno.fileNameTooLong, detail: "\(path) is longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return addr
    }

    private static func newSocket() throws(SystemError) -> OwnedFileDescriptor {
        let fd = try retryingSyscall("socket(AF_UNIX, SOCK_SEQPACKET)") {
            socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        return OwnedFileDescriptor(taking: fd)
    }

    /// Binds and listens at `path`, replacing a stale socket file left by a dead agent.
    /// The socket is bound under a temporary name and renamed into place once listening, so
    /// a client never finds a path that refuses connections. `mode` sets its permissions.
    public static func listen(path: String, mode: mode_t = 0o660, backlog: Int32 = 128) throws(SystemError) -> UnixSocket {
        DescriptorReserve.prepare()
        let temporary = "\(path).\(getpid()).tmp"
        var addr = try address(temporary)
        let fd = try newSocket()
        unlink(temporary)
        _ = try retryingSyscall("bind", detail: temporary) {
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
        do {
            _ = try retryingSyscall("chmod", detail: temporary) { chmod(temporary, mode) }
            _ = try retryingSyscall("listen", detail: temporary) { Glibc.listen(fd.rawValue, backlog) }
            _ = try retryingSyscall("rename", detail: path) { rename(temporary, path) }
        } catch {
            unlink(temporary)
            throw error
        }
        return UnixSocket(fd)
    }

    /// Connects to a listening socket at `path`.
    public static func connect(path: String) throws(SystemError) -> UnixSocket {
        var addr = try address(path)
        let fd = try newSocket()
        _ = try retryingSyscall("connect", detail: path) {
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
        return UnixSocket(fd)
    }

    /// Accepts one connection; `nil` when none is pending on a non-blocking socket. Out of
    /// descriptors, a pending connection is shed (``DescriptorReserve``).
    public func accept() throws(SystemError) -> UnixSocket? {
        let accepted: Int32?
        do {
            accepted = try nonBlockingSyscall("accept4", { vio_shim_accept_cloexec(self.fd.rawValue) })
        } catch {
            if let report = DescriptorReserve.shedding(error, listener: fd.rawValue) { throw report }
            return nil
        }
        guard let fd = accepted else { return nil }
        return UnixSocket(OwnedFileDescriptor(taking: fd))
    }

    /// The kernel's record of who is at the other end.
    public func peerCredentials() throws(SystemError) -> PeerCredentials {
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        _ = try retryingSyscall("getsockopt(SO_PEERCRED)") { vio_shim_peer_credentials(fd.rawValue, &pid, &uid, &gid) }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    /// Sends one message with descriptors attached (the receiver gets its own copies).
    public func send(_ bytes: [UInt8], descriptors: [Int32] = []) throws(SystemError) {
        precondition(descriptors.count <= Self.maximumDescriptors)
        _ = try retryingSyscall("sendmsg") {
            bytes.withUnsafeBytes { raw in
                descriptors.withUnsafeBufferPointer { fds in
                    vio_shim_send_with_fds(fd.rawValue, raw.baseAddress, raw.count, fds.baseAddress,
                                           Int32(fds.count), 0)
                }
            }
        }
    }

    /// One received message.
    public struct Received: Sendable {
        /// The message bytes; empty with `closed` at end of stream.
        public var bytes: [UInt8]
        /// Descriptors that came with it, now owned by the receiver.
        public var descriptors: [Int32]
        /// The message did not fit and was cut.
        public var truncated: Bool
        /// More descriptors came than fit (the extra ones were closed).
        public var descriptorsTruncated: Bool
        /// The peer closed the connection.
        public var closed: Bool
    }

    /// Receives one message; `nil` when nothing is pending on a non-blocking socket.
    public func receive(dontWait: Bool = false) throws(SystemError) -> Received? {
        var buffer = [UInt8](repeating: 0, count: Self.maximumMessage)
        var fds = [Int32](repeating: -1, count: Self.maximumDescriptors)
        var count: Int32 = 0, truncated: Int32 = 0
        let flags = dontWait ? Int32(MSG_DONTWAIT) : 0
        let n = try nonBlockingSyscall("recvmsg") {
            buffer.withUnsafeMutableBytes { raw in
                fds.withUnsafeMutableBufferPointer { f in
                    vio_shim_recv_with_fds(fd.rawValue, raw.baseAddress, raw.count, f.baseAddress,
                                           Int32(f.count), &count, &truncated, flags)
                }
            }
        }
        guard let n else { return nil }
        return Received(bytes: Array(buffer[..<n]), descriptors: Array(fds[..<Int(count)]),
                        truncated: truncated & 1 != 0, descriptorsTruncated: truncated & 2 != 0,
                        closed: n == 0 && count == 0)
    }
}
