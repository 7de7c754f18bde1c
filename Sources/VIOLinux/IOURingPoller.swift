import CVIOShim
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Waits on many descriptors with one io_uring: each registered fd has a multishot poll, so
/// registering costs one submission and every later wait is a single `io_uring_enter`.
///
/// Used for "wait on many links at once": each link's doorbell eventfd is registered here.
/// (For a single doorbell poll(2) is cheaper; see docs/waiting.md.) Not thread-safe: one
/// thread waits on a poller.
public final class IOURingPoller {
    private let ring: OpaquePointer
    private var registered: [UInt64: Int32] = [:]

    /// A ring with room for `entries` submissions at a time.
    public init(entries: UInt32 = 256) throws(SystemError) {
        guard let r = vio_shim_uring_create(entries) else {
            throw SystemError("io_uring_queue_init", Errno(rawValue: errno))
        }
        ring = r
    }

    deinit { vio_shim_uring_destroy(ring) }

    /// Reports `fd` becoming readable with `token` until ``remove(token:)``.
    public func add(_ fd: Int32, token: UInt64) throws(SystemError) {
        precondition(token != UInt64.max, "token reserved")
        let rc = vio_shim_uring_poll_add(ring, fd, token)
        if rc < 0 { throw SystemError("io_uring_submit(POLL_ADD)", Errno(rawValue: -rc)) }
        registered[token] = fd
    }

    /// Stops watching the descriptor registered with `token`.
    public func remove(token: UInt64) {
        guard registered.removeValue(forKey: token) != nil else { return }
        _ = vio_shim_uring_poll_remove(ring, token)
    }

    /// Waits up to `timeoutNanoseconds` (nil: forever) and returns the tokens that fired.
    public func wait(timeoutNanoseconds: UInt64?) throws(SystemError) -> [UInt64] {
        var tokens = [UInt64](repeating: 0, count: 64)
        var ended = [Int32](repeating: 0, count: 64)
        let timeout = timeoutNanoseconds.map { Int64(min($0, UInt64(Int64.max))) } ?? -1
        let n = vio_shim_uring_wait(ring, timeout, &tokens, &ended, 64)
        if n < 0 { throw SystemError("io_uring_wait_cqe", Errno(rawValue: -n)) }
        var fired: [UInt64] = []
        for i in 0..<Int(n) {
            guard let fd = registered[tokens[i]] else { continue }
            fired.append(tokens[i])
            // A multishot poll that ended (e.g. completion queue overflow) is re-armed.
            if ended[i] != 0 { _ = vio_shim_uring_poll_add(ring, fd, tokens[i]) }
        }
        return fired
    }
}
