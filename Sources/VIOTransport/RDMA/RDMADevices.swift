import CIBVerbs

#if canImport(Glibc)
import Glibc
#endif

/// An RDMA device found through libibverbs.
public struct RDMADevice: Sendable, Equatable {
    /// Kernel name, e.g. `mlx5_0`.
    public var name: String
    /// Whether port 1 reports ACTIVE.
    public var portActive: Bool
}

/// Enumerates RDMA devices. On a host without RDMA support (no kernel modules, no
/// /sys/class/infiniband) this returns an empty list and a reason, never an error.
public enum RDMADevices {
    /// Devices and, when there are none, why.
    public static func scan() -> (devices: [RDMADevice], reason: String) {
        // Without the kernel side, libibverbs cannot find sysfs entries; checking first also
        // keeps it from printing its own warnings to our stderr.
        var info = stat()
        guard stat("/sys/class/infiniband", &info) == 0 else {
            return ([], "no RDMA device: /sys/class/infiniband is absent (no RDMA kernel support)")
        }
        var count: Int32 = 0
        guard let list = ibv_get_device_list(&count) else {
            return ([], "no RDMA device: ibv_get_device_list failed (\(String(cString: strerror(errno))))")
        }
        defer { ibv_free_device_list(list) }
        var devices: [RDMADevice] = []
        for index in 0..<Int(count) {
            guard let device = list[index] else { continue }
            let name = String(cString: ibv_get_device_name(device))
            var active = false
            if let context = ibv_open_device(device) {
                var port = ibv_port_attr()
                active = vio_ibv_query_port(context, 1, &port) == 0 && port.state == IBV_PORT_ACTIVE
                ibv_close_device(context)
            }
            devices.append(RDMADevice(name: name, portActive: active))
        }
        return (devices, devices.isEmpty ? "no RDMA device: libibverbs lists none" : "")
    }
}

/// What a host will use towards its peers, and why.
public struct TransportChoice: Sendable, Equatable, CustomStringConvertible {
    /// `rdma` or `tcp`.
    public var kind: String
    /// Device used for RDMA.
    public var device: String?
    /// Why this was chosen.
    public var reason: String

    /// A choice.
    public init(kind: String, device: String?, reason: String) {
        self.kind = kind
        self.device = device
        self.reason = reason
    }

    public var description: String { "\(kind)\(device.map { " (\($0))" } ?? ""): \(reason)" }
}

/// Applies a host's `transport` setting to what the machine has.
public enum TransportSelector {
    /// Errors a user must fix before the agent can start.
    public struct Unavailable: Error, Sendable, CustomStringConvertible {
        /// What is missing.
        public var description: String
    }

    /// `requested` is the topology's `auto`, `rdma` or `tcp`; `device` the optional `rdma_device`.
    public static func choose(requested: String, device wanted: String?,
                              scan: () -> (devices: [RDMADevice], reason: String) = RDMADevices.scan)
        throws(Unavailable) -> TransportChoice {
        if requested == "tcp" { return TransportChoice(kind: "tcp", device: nil, reason: "topology asks for tcp") }
        let (devices, reason) = scan()
        let usable = devices.filter { $0.portActive && (wanted == nil || $0.name == wanted) }
        if let device = usable.first {
            return TransportChoice(kind: "rdma", device: device.name,
                                   reason: "RDMA device \(device.name) has an active port")
        }
        let why = devices.isEmpty ? reason
            : "no active RDMA port\(wanted.map { " on \($0)" } ?? "") among \(devices.map(\.name).joined(separator: ", "))"
        if requested == "rdma" {
            throw Unavailable(description: "transport 'rdma' requested but \(why); set 'transport: auto' or 'tcp' to run without RDMA")
        }
        return TransportChoice(kind: "tcp", device: nil, reason: "auto: \(why)")
    }

    /// The carrier for one host pair: RDMA only when this host chose it (``choose(requested:device:scan:)``)
    /// and the peer's setting allows it (`auto` or `rdma`; a peer set to `tcp` has the pair
    /// fall back to what both have). Whether the far host has RDMA is learnt when its channel
    /// moves (``RDMAChannel``). Returns `rdma` or `tcp` and why, in words for logs and status.
    public static func forPair(local: TransportChoice, peer: String, peerSetting: String) -> (kind: String, reason: String) {
        guard local.kind == "rdma" else { return ("tcp", local.reason) }
        guard peerSetting != "tcp" else { return ("tcp", "'\(peer)' is set to transport: tcp") }
        return ("rdma", "both ends may use RDMA (\(local.device ?? "?") here)")
    }
}
