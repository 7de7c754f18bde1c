import CVIOShim

/// A signalfd for termination signals, so a daemon handles them in its event loop instead of
/// in an async-signal handler.
public struct SignalDescriptor: ~Copyable, Sendable {
    /// The owned signalfd.
    public let fd: OwnedFileDescriptor

    /// Blocks `signals` for the calling thread and its future threads and reads them from an fd.
    /// Call before starting other threads so none of them receives the signals instead.
    public init(signals: [Int32]) throws(SystemError) {
        let raw = try retryingSyscall("signalfd") {
            signals.withUnsafeBufferPointer { vio_shim_signalfd($0.baseAddress, Int32($0.count)) }
        }
        fd = OwnedFileDescriptor(taking: raw)
    }

    /// The next pending signal number, or `nil` if none.
    public func next() throws(SystemError) -> Int32? {
        let signal = try retryingSyscall("read(signalfd)") { vio_shim_signalfd_read(fd.rawValue) }
        return signal == 0 ? nil : signal
    }
}
