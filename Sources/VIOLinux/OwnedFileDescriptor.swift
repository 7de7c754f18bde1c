import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The single owner of an open file descriptor: closes it exactly once, when dropped.
///
/// Not copyable, so an fd cannot be closed twice or used after close by accident. Use
/// ``borrowed`` for calls that only need the number and ``take()`` to pass ownership on
/// (e.g. into SCM_RIGHTS or a C caller).
public struct OwnedFileDescriptor: ~Copyable, @unchecked Sendable {
    /// The descriptor number, valid while this owner lives.
    public let rawValue: Int32

    /// Takes ownership of `rawValue`.
    public init(taking rawValue: Int32) {
        precondition(rawValue >= 0, "negative file descriptor")
        self.rawValue = rawValue
    }

    /// The fd as swift-system's non-owning wrapper.
    public var borrowed: FileDescriptor { FileDescriptor(rawValue: rawValue) }

    /// Gives up ownership without closing; the caller must close the number.
    public consuming func take() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    /// Closes now rather than at the end of the scope.
    public consuming func close() {
        _ = Glibc.close(rawValue)
        discard self
    }

    deinit {
        // close(2) is not retried on EINTR on Linux: the fd is released either way.
        _ = Glibc.close(rawValue)
    }

    /// A second owner of the same open file (dup with close-on-exec).
    public func duplicate() throws(SystemError) -> OwnedFileDescriptor {
        let fd = try retryingSyscall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(rawValue, F_DUPFD_CLOEXEC, 0) }
        return OwnedFileDescriptor(taking: fd)
    }

    /// Sets or clears O_NONBLOCK.
    public func setNonBlocking(_ on: Bool = true) throws(SystemError) {
        let flags = try retryingSyscall("fcntl(F_GETFL)") { fcntl(rawValue, F_GETFL) }
        let wanted = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        if wanted != flags { _ = try retryingSyscall("fcntl(F_SETFL)") { fcntl(rawValue, F_SETFL, wanted) } }
    }
}
