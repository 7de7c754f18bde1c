import VIOLinux

/// The agent's one epoll instance, shared by the control plane and the fabric so a single
/// thread waits on everything (no locks: one thread owns all agent state). Fabric tokens
/// carry ``Fabric/tokenFlag``; the agent hands those events to the fabric.
final class EventLoop {
    let epoll: Epoll

    init() throws(SystemError) {
        epoll = try Epoll()
    }
}
