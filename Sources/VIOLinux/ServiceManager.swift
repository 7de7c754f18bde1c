#if canImport(Glibc)
import Glibc
#endif

/// The service manager's readiness protocol (systemd's `sd_notify`): state lines sent as one
/// datagram to the Unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
/// namespace). Without the variable, nothing happens: the agent runs the same by hand.
public enum ServiceManager {
    /// Sends `state` (e.g. `READY=1`, `STOPPING=1`); true if it was sent.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        guard let target = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), !target.isEmpty else { return false }
        guard let fd = try? retryingSyscall("socket(AF_UNIX, SOCK_DGRAM)", { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0) }) else {
            return false
        }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(target.utf8)
        if path.first == UInt8(ascii: "@") { path[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        // A path needs its terminating NUL; an abstract name (leading NUL) may fill the field.
        guard path.count < capacity || (path.first == 0 && path.count == capacity) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (path.first == 0 ? 0 : 1))
        let sent = try? state.utf8CString.withUnsafeBufferPointer { text throws(SystemError) in
            try retryingSyscall("sendto($NOTIFY_SOCKET)") {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, text.baseAddress, text.count - 1, Int32(MSG_NOSIGNAL), $0, length)
                    }
                }
            }
        }
        return sent != nil
    }
}
