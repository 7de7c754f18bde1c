import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, and the errno it returned.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The call that failed, e.g. `"connect"`.
    public var call: String
    /// What the kernel said.
    public var errno: Errno
    /// Extra context, e.g. the path involved.
    public var detail: String?

    /// An error from `call` with `errno`.
    public init(_ call: String, _ errno: Errno, detail: String? = nil) {
        self.call = call
        self.errno = errno
        self.detail = detail
    }

    /// `connect(/run/vio/a.sock): No such file or directory`.
    public var description: String {
        "\(call)\(detail.map { "(\($0))" } ?? ""): \(errno.description)"
    }
}

/// Runs a libc call that returns -1 and sets errno on failure, retrying EINTR.
///
/// Every syscall in VIO goes through here, so failures always name the call.
@inlinable
public func retryingSyscall<T: FixedWidthInteger>(
    _ call: @autoclosure () -> String, detail: String? = nil, _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemError(call(), Errno(rawValue: code), detail: detail)
    }
}

/// Like ``retryingSyscall(_:detail:_:)`` but returns `nil` instead of throwing for `EAGAIN`,
/// for non-blocking I/O.
@inlinable
public func nonBlockingSyscall<T: FixedWidthInteger>(
    _ call: @autoclosure () -> String, _ body: () -> T
) throws(SystemError) -> T? {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        if code == EAGAIN || code == EWOULDBLOCK { return nil }
        throw SystemError(call(), Errno(rawValue: code))
    }
}
