import CVIOShim
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking TCP socket (IPv4 or IPv6): what the agents' physical channels run on.
///
/// Every call goes through ``retryingSyscall(_:detail:_:)`` or ``nonBlockingSyscall(_:_:)``,
/// so a failure names the call and the address.
public struct TCPSocket: ~Copyable, Sendable {
    /// The owned descriptor.
    public let fd: OwnedFileDescriptor

    /// Wraps an open socket.
    public init(_ fd: consuming OwnedFileDescriptor) { self.fd = fd }

    /// A resolved socket address.
    public struct Address: Sendable, CustomStringConvertible {
        /// An empty address, filled in by ``TCPSocket/accept(peer:)``.
        public init() {}
        var storage = sockaddr_storage()
        var length: socklen_t = 0

        /// `198.18.0.1:7300` or `[::1]:7300`.
        public var description: String {
            var copy = storage
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
            let rc = withUnsafePointer(to: &copy) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    getnameinfo($0, length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                                NI_NUMERICHOST | NI_NUMERICSERV)
                }
            }
            guard rc == 0 else { return "?" }
            let h = String(cString: host), s = String(cString: service)
            return storage.ss_family == sa_family_t(AF_INET6) ? "[\(h)]:\(s)" : "\(h):\(s)"
        }
    }

    /// `ADDRESS:PORT` (`[IPv6]:PORT`) split into the host and the port, nil when it is not one.
    /// (The topology checks its own addresses more strictly: ``Addresses`` in VIOTopology.)
    public static func split(hostPort text: String) -> (host: String, port: UInt16)? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// Resolves `host` (an IP address or a name) and `port`; the first result wins.
    public static func resolve(_ host: String, port: UInt16) throws(SystemError) -> Address {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            let reason = rc == 0 ? "no address" : String(cString: gai_strerror(rc))
            throw SystemError("getaddrinfo", Errno.noSuchAddressOrDevice, detail: "\(host): \(reason)")
        }
        defer { freeaddrinfo(result) }
        var address = Address()
        withUnsafeMutableBytes(of: &address.storage) { raw in
            raw.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        }
        address.length = first.pointee.ai_addrlen
        return address
    }

    /// A non-blocking, close-on-exec socket of `type` (SOCK_STREAM, SOCK_DGRAM) for `address`'s
    /// family: what ``TCPSocket`` and ``UDPSocket`` are made of.
    static func newSocket(_ type: __socket_type, for address: Address) throws(SystemError) -> OwnedFileDescriptor {
        let name = type == SOCK_STREAM ? "socket(SOCK_STREAM)" : "socket(SOCK_DGRAM)"
        let fd = try retryingSyscall(name, detail: "\(address)") {
            socket(Int32(address.storage.ss_family), Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        return OwnedFileDescriptor(taking: fd)
    }

    /// A non-blocking listening socket bound to `address` (SO_REUSEADDR, so a restarted agent
    /// binds while old connections linger in TIME_WAIT).
    public static func listen(on address: Address, backlog: Int32 = 128) throws(SystemError) -> TCPSocket {
        DescriptorReserve.prepare()
        let socket = TCPSocket(try newSocket(SOCK_STREAM, for: address))
        try socket.setOption(SOL_SOCKET, SO_REUSEADDR, 1)
        _ = try retryingSyscall("bind", detail: "\(address)") { address.withSockaddr { bind(socket.fd.rawValue, $0, $1) } }
        _ = try retryingSyscall("listen", detail: "\(address)") { Glibc.listen(socket.fd.rawValue, backlog) }
        return socket
    }

    /// Starts a non-blocking connect; completion shows as writability, then ``pendingError()``
    /// tells success from failure.
    public static func connect(to address: Address) throws(SystemError) -> TCPSocket {
        let socket = TCPSocket(try newSocket(SOCK_STREAM, for: address))
        let rc = address.withSockaddr { Glibc.connect(socket.fd.rawValue, $0, $1) }
        if rc != 0 && errno != EINPROGRESS && errno != EINTR {
            throw SystemError("connect", Errno(rawValue: errno), detail: "\(address)")
        }
        return socket
    }

    /// Accepts one connection (non-blocking, close-on-exec) and stores the peer's address
    /// in `peer`; `nil` when none is pending.
    public func accept(peer: inout Address) throws(SystemError) -> TCPSocket? {
        var address = Address()
        var length = UInt32(MemoryLayout<sockaddr_storage>.size)
        let accepted: Int32?
        do {
            accepted = try nonBlockingSyscall("accept4") {
                vio_shim_accept_nonblocking(self.fd.rawValue, &address.storage, &length)
            }
        } catch {
            // Out of descriptors, a pending connection is shed (DescriptorReserve).
            if let report = DescriptorReserve.shedding(error, listener: self.fd.rawValue) { throw report }
            return nil
        }
        guard let fd = accepted else { return nil }
        address.length = socklen_t(length)
        peer = address
        return TCPSocket(OwnedFileDescriptor(taking: fd))
    }

    /// The error of a finished non-blocking connect (SO_ERROR), nil when it succeeded.
    public func pendingError() -> Errno? {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd.rawValue, SOL_SOCKET, SO_ERROR, &value, &length) == 0 else { return Errno(rawValue: errno) }
        return value == 0 ? nil : Errno(rawValue: value)
    }

    /// Sets an integer socket option.
    public func setOption(_ level: Int32, _ name: Int32, _ value: Int32) throws(SystemError) {
        var v = value
        _ = try retryingSyscall("setsockopt(\(level),\(name))") {
            setsockopt(fd.rawValue, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// Turns off Nagle's algorithm: the agents batch frames themselves.
    public func setNoDelay() throws(SystemError) {
        try setOption(Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }

    /// Reads into `buffer`: the byte count, 0 at end of stream, nil when nothing is pending.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        try nonBlockingSyscall("read") { Glibc.read(fd.rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Reads into `first`, then on into `second` (one `readv`): the byte count, 0 at end of
    /// stream, nil when nothing is pending.
    public func read(into first: UnsafeMutableRawBufferPointer,
                     then second: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        var vectors = (iovec(iov_base: first.baseAddress, iov_len: first.count),
                       iovec(iov_base: second.baseAddress, iov_len: second.count))
        return try withUnsafeMutableBytes(of: &vectors) { raw throws(SystemError) -> Int? in
            let base = raw.baseAddress!.assumingMemoryBound(to: iovec.self)
            return try nonBlockingSyscall("readv") { readv(fd.rawValue, base, 2) }
        }
    }

    /// Looks at pending input without consuming it: the byte count, 0 at end of stream, nil
    /// when nothing is pending.
    public func peek(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        try nonBlockingSyscall("recv") { recv(fd.rawValue, buffer.baseAddress, buffer.count, Int32(MSG_PEEK)) }
    }

    /// Writes what the socket takes now: the byte count, nil when it takes nothing.
    public func write(_ buffer: UnsafeRawBufferPointer) throws(SystemError) -> Int? {
        try nonBlockingSyscall("send") { send(fd.rawValue, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Writes what the socket takes now from several buffers in order (one `sendmsg`): the
    /// byte count, nil when it takes nothing.
    public func write(_ vectors: UnsafeMutableBufferPointer<iovec>) throws(SystemError) -> Int? {
        var message = msghdr()
        message.msg_iov = vectors.baseAddress
        message.msg_iovlen = vectors.count
        return try nonBlockingSyscall("sendmsg") { sendmsg(fd.rawValue, &message, Int32(MSG_NOSIGNAL)) }
    }

    /// Ends both directions now (the far end reads end of stream even while this descriptor
    /// stays open).
    public func shutdown() throws(SystemError) {
        _ = try retryingSyscall("shutdown") { Glibc.shutdown(fd.rawValue, Int32(SHUT_RDWR)) }
    }

    /// Ends this side's writing (the far end reads end of stream); reading goes on.
    public func shutdownWrite() throws(SystemError) {
        _ = try retryingSyscall("shutdown(SHUT_WR)") { Glibc.shutdown(fd.rawValue, Int32(SHUT_WR)) }
    }

    /// Makes closing this socket reset the connection (SO_LINGER with a zero timeout): the
    /// far end reads ECONNRESET rather than end of stream, and unsent bytes are dropped.
    public func resetOnClose() {
        var value = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd.rawValue, SOL_SOCKET, SO_LINGER, &value, socklen_t(MemoryLayout<linger>.size))
    }

    /// The local address (the port the kernel chose for an ephemeral bind).
    public func localAddress() throws(SystemError) -> Address {
        var address = Address()
        address.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try retryingSyscall("getsockname") {
            withUnsafeMutablePointer(to: &address.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd.rawValue, $0, &address.length) }
            }
        }
        return address
    }
}

extension TCPSocket.Address {
    /// Calls `body` with the address as a `sockaddr` and its length (for bind, connect, sendto).
    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var copy = storage
        return withUnsafePointer(to: &copy) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
    }
}
