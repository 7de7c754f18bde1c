import CVIOShim
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// pidfd(2): a descriptor that becomes readable when the process exits, without the races of
/// pid reuse. The agent watches attached instances with it.
public enum ProcessDescriptor {
    /// A pidfd for `pid`.
    public static func open(pid: Int32) throws(SystemError) -> OwnedFileDescriptor {
        OwnedFileDescriptor(taking: try retryingSyscall("pidfd_open", detail: "pid \(pid)") {
            vio_shim_pidfd_open(pid, 0)
        })
    }
}

/// A pidfd shared by everything that must notice one process's exit (an instance's links to
/// other hosts watch the local agent with it). Closed when the last holder lets go.
public final class ProcessExitWatch: Sendable {
    private let pidfd: OwnedFileDescriptor
    /// The pidfd: readable once the process has exited.
    public var descriptor: Int32 { pidfd.rawValue }

    /// Watches `pid` (it must be alive now, or this throws).
    public init(pid: Int32) throws(SystemError) {
        pidfd = try ProcessDescriptor.open(pid: pid)
    }
}

/// Where the calling thread runs.
public enum CPULocation {
    /// The NUMA node of the CPU the calling thread runs on (0 when unknown).
    public static func currentNode() -> Int {
        var cpu: UInt32 = 0, node: UInt32 = 0
        return vio_shim_getcpu(&cpu, &node) == 0 ? Int(node) : 0
    }

    /// A spin-loop hint to the CPU (x86 `pause`): kinder to the sibling hyper-thread and
    /// avoids a memory-order flush when the awaited store lands.
    public static func relax() { vio_shim_cpu_relax() }

    /// Pins the calling thread to `cpu`.
    public static func pinCurrentThread(to cpu: Int) throws(SystemError) {
        let rc = vio_shim_pin_thread_to_cpu(Int32(cpu))
        if rc != 0 { throw SystemError("pthread_setaffinity_np", Errno(rawValue: rc), detail: "cpu \(cpu)") }
    }
}
