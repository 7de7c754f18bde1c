import CVIOShim

#if canImport(Glibc)
import Glibc
#endif

/// Network namespaces made with `ip netns add` (the multi-host test cluster's hosts).
public enum NetworkNamespace {
    /// Moves the calling thread, and the threads it starts afterwards, into the namespace
    /// `/run/netns/NAME`: sockets it then makes live there.
    public static func enterOnThisThread(_ name: String) throws(SystemError) {
        let path = "/run/netns/\(name)"
        let fd = try retryingSyscall("open", detail: path) { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        _ = try retryingSyscall("setns", detail: path) { vio_shim_enter_network_namespace(fd) }
    }
}
