import CVIOShim
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking UDP socket (IPv4 or IPv6): what proxy mode's datagram services use, bound
/// where clients send (one socket for all of them) or connected to the real server (one per
/// client flow). Addresses are ``TCPSocket/Address`` values (a socket address is one).
public struct UDPSocket: ~Copyable, Sendable {
    /// The owned descriptor.
    public let fd: OwnedFileDescriptor

    private init(for address: TCPSocket.Address) throws(SystemError) {
        fd = try TCPSocket.newSocket(SOCK_DGRAM, for: address)
    }

    /// A socket bound to `address`, taking datagrams from anyone.
    public static func bound(to address: TCPSocket.Address) throws(SystemError) -> UDPSocket {
        let socket = try UDPSocket(for: address)
        _ = try retryingSyscall("bind", detail: "\(address)") { address.withSockaddr { bind(socket.fd.rawValue, $0, $1) } }
        return socket
    }

    /// A socket connected to `address`: it sends there and takes datagrams only from there.
    public static func connected(to address: TCPSocket.Address) throws(SystemError) -> UDPSocket {
        let socket = try UDPSocket(for: address)
        _ = try retryingSyscall("connect", detail: "\(address)") { address.withSockaddr { Glibc.connect(socket.fd.rawValue, $0, $1) } }
        return socket
    }

    /// Receives one datagram into `buffer` and its sender into `from`: the byte count (a
    /// longer datagram is cut), nil when none is pending.
    public func receive(into buffer: UnsafeMutableRawBufferPointer, from: inout TCPSocket.Address) throws(SystemError) -> Int? {
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = try nonBlockingSyscall("recvfrom") {
            withUnsafeMutablePointer(to: &from.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd.rawValue, buffer.baseAddress, buffer.count, 0, $0, &length) }
            }
        }
        if n != nil { from.length = length }
        return n
    }

    /// Receives one datagram from the connected peer: the byte count, nil when none is pending.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        try nonBlockingSyscall("recv") { recv(fd.rawValue, buffer.baseAddress, buffer.count, 0) }
    }

    /// Sends one datagram to `address`: false when the socket's buffer is full (it is dropped,
    /// as the network may drop it).
    public func send(_ bytes: UnsafeRawBufferPointer, to address: TCPSocket.Address) throws(SystemError) -> Bool {
        try nonBlockingSyscall("sendto") {
            address.withSockaddr { sendto(fd.rawValue, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), $0, $1) }
        } != nil
    }

    /// Sends one datagram to the connected peer: false when the socket's buffer is full.
    public func send(_ bytes: UnsafeRawBufferPointer) throws(SystemError) -> Bool {
        try nonBlockingSyscall("send") { Glibc.send(fd.rawValue, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) } != nil
    }
}

extension TCPSocket.Address: Hashable {
    public static func == (a: Self, b: Self) -> Bool {
        a.length == b.length && withUnsafeBytes(of: a.storage) { x in
            withUnsafeBytes(of: b.storage) { y in x.prefix(Int(a.length)).elementsEqual(y.prefix(Int(b.length))) }
        }
    }

    public func hash(into hasher: inout Hasher) {
        withUnsafeBytes(of: storage) { hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: $0.prefix(Int(length)))) }
    }
}
