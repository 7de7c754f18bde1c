import VIOWire

/// One host's share of the cluster: what its agent admits, which links it sets up locally
/// and which it carries to other hosts. Every default is filled in.
public struct HostView: Sendable, Equatable {
    /// This host.
    public var host: Host
    /// Instances that attach to this host's agent.
    public var instances: [ResolvedInstance]
    /// Links with at least one end on this host.
    public var links: [ResolvedLink]
    /// Other hosts this one exchanges traffic with, and who opens the channels.
    public var peers: [PeerHost]
    /// Services with an end on this host.
    public var services: [Service]
    /// The control socket path this agent listens on.
    public var controlSocket: String

    /// The link between `a` and `b` (in either order) with an end on this host, if declared.
    public func link(between a: String, and b: String) -> ResolvedLink? {
        links.first { ($0.localEnd == a && $0.peerEnd == b) || ($0.localEnd == b && $0.peerEnd == a) }
    }

    /// The other end of `link` when `instance` is one of its ends.
    public func peer(of instance: String, on link: ResolvedLink) -> String? {
        link.localEnd == instance ? link.peerEnd : link.peerEnd == instance ? link.localEnd : nil
    }
}

/// An instance with its effective settings.
public struct ResolvedInstance: Sendable, Equatable {
    /// The declared instance.
    public var instance: Instance
    /// Ring size for links it receives on, after defaults.
    public var ringSize: ByteSize
}

/// A link seen from one host, with its effective sizes.
public struct ResolvedLink: Sendable, Equatable {
    /// Where the other end lives.
    public enum Kind: Sendable, Equatable {
        /// Both ends on this host: a direct shared-memory link.
        case local
        /// The other end is on `host`: carried by the agents.
        case remote(host: String)
    }

    /// The end on this host (the first declared end when both are local).
    public var localEnd: String
    /// The other end.
    public var peerEnd: String
    /// Local or through the fabric.
    public var kind: Kind
    /// Bytes in the ring that `localEnd` receives on.
    public var ringSizeToLocal: ByteSize
    /// Bytes in the ring that `peerEnd` receives on.
    public var ringSizeToPeer: ByteSize
    /// Largest message.
    public var maxMessageSize: ByteSize
    /// A cross-host link's session id (0 for a local link): derived from the two instance
    /// names (``FabricIdentifiers/session(between:and:)``), so both agents of the link find the
    /// same number whatever else their topology files declare.
    public var session: UInt32 = 0
}

/// Another host this one has links or proxied services to.
public struct PeerHost: Sendable, Equatable {
    /// The peer.
    public var host: Host
    /// Whether this side opens the channels (otherwise it accepts them).
    public var weDial: Bool
    /// Physical channels to keep.
    public var channels: Int
    /// Virtual links carried to this peer.
    public var linkCount: Int
    /// How the channels to this peer are protected.
    public var security: Security

    /// A peer entry.
    public init(host: Host, weDial: Bool, channels: Int, linkCount: Int, security: Security) {
        self.host = host
        self.weDial = weDial
        self.channels = channels
        self.linkCount = linkCount
        self.security = security
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension Topology {
    /// The control socket to use when the topology names none: `$VIO_CONTROL_SOCKET` if set,
    /// else ``defaultControlSocket(host:isRoot:runtimeDirectory:)`` for the calling user.
    /// `vio-agent` and `vioctl` both resolve it this way, so they meet without options.
    public static func defaultControlSocket(host: String) -> String {
        func env(_ name: String) -> String? {
            getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        return env("VIO_CONTROL_SOCKET")
            ?? defaultControlSocket(host: host, isRoot: getuid() == 0, runtimeDirectory: env("XDG_RUNTIME_DIR"))
    }

    /// The default control socket when neither the topology nor the command line names one:
    /// under /run for root, under XDG_RUNTIME_DIR (or /tmp) for others.
    public static func defaultControlSocket(host: String, isRoot: Bool, runtimeDirectory: String?) -> String {
        let base = isRoot ? "/run/vio" : "\(runtimeDirectory ?? "/tmp")/vio"
        return "\(base)/\(host).sock"
    }

    /// What the agents of hosts `a` and `b` must agree on before their channels carry anything:
    /// the cluster, the two hosts' keys and the pair's security. Links and services are
    /// compared one by one as they open, so files that differ elsewhere still work together.
    public func pairIdentity(_ a: String, _ b: String) -> [String] {
        let (first, second) = a <= b ? (a, b) : (b, a)
        return [cluster, first, second, host(named: first)?.key?.description ?? "-", host(named: second)?.key?.description ?? "-",
                security(between: first, second).rawValue]
    }

    /// Session ids of the links between `host` and each other host, keyed by the link's two
    /// names (sorted, joined by a NUL). Each pair's links take their preferred id in the order
    /// of their names; one that finds it taken tries the next (``FabricIdentifiers/probe(_:)``).
    func sessionIDs(of host: String, byName: [String: Instance]) -> [String: UInt32] {
        var perPeer: [String: [String]] = [:]
        for link in links {
            let (a, b) = link.endpoints
            guard let ia = byName[a], let ib = byName[b], ia.host != ib.host, ia.host == host || ib.host == host else { continue }
            perPeer[ia.host == host ? ib.host : ia.host, default: []].append(Self.linkKey(a, b))
        }
        var ids: [String: UInt32] = [:]
        for keys in perPeer.values {
            var taken: Set<UInt32> = []
            for key in keys.sorted() {
                let names = key.split(separator: "\u{0}", omittingEmptySubsequences: false)
                var id = FabricIdentifiers.session(between: String(names[0]), and: String(names[1]))
                while taken.contains(id) { id = FabricIdentifiers.probe(id) }
                taken.insert(id)
                ids[key] = id
            }
        }
        return ids
    }

    /// The two names of a link in a fixed order, for keying it whichever end comes first.
    static func linkKey(_ a: String, _ b: String) -> String { a <= b ? "\(a)\u{0}\(b)" : "\(b)\u{0}\(a)" }

    /// Which side of a host pair dials: a host behind NAT always does; otherwise the one whose
    /// name sorts first, so both agents agree without talking.
    public static func dials(_ a: Host, to b: Host) -> Bool {
        if a.nat != b.nat { return a.nat == .behind }
        return a.name < b.name
    }

    /// The view of host `name`, or `nil` if it is not declared.
    public func view(for name: String, controlSocket defaultSocket: String) -> HostView? {
        guard let host = host(named: name) else { return nil }
        let byName = Dictionary(instances.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        func ring(_ receiver: String, _ link: Link) -> ByteSize {
            link.ringSize ?? byName[receiver]?.ringSize ?? defaults.ringSize
        }
        let local = instances.filter { $0.host == name }
        let sessions = sessionIDs(of: name, byName: byName)
        var links: [ResolvedLink] = []
        var perPeer: [String: Int] = [:]
        for link in self.links {
            let (a, b) = link.endpoints
            guard let ia = byName[a], let ib = byName[b] else { continue }
            let (mine, other): (Instance, Instance)
            if ia.host == name { (mine, other) = (ia, ib) } else if ib.host == name { (mine, other) = (ib, ia) } else { continue }
            let kind: ResolvedLink.Kind = other.host == name ? .local : .remote(host: other.host)
            if case .remote(let h) = kind { perPeer[h, default: 0] += 1 }
            links.append(ResolvedLink(localEnd: mine.name, peerEnd: other.name, kind: kind,
                                      ringSizeToLocal: ring(mine.name, link), ringSizeToPeer: ring(other.name, link),
                                      maxMessageSize: link.maxMessageSize ?? defaults.maxMessageSize,
                                      session: kind == .local ? 0 : sessions[Self.linkKey(a, b)] ?? 0))
        }
        let services = self.services.filter { s in s.server.host == name || s.listen.contains { $0.host == name } }
        // A service joins the hosts where clients connect to its server's host.
        var servicePeers: Set<String> = []
        for s in services {
            if s.server.host == name {
                servicePeers.formUnion(s.listen.map(\.host).filter { $0 != name })
            } else {
                servicePeers.insert(s.server.host)
            }
        }
        let peers = hosts.filter { perPeer[$0.name] != nil || servicePeers.contains($0.name) }.map { peer in
            PeerHost(host: peer, weDial: Self.dials(host, to: peer), channels: min(host.channels, peer.channels),
                     linkCount: perPeer[peer.name] ?? 0, security: security(between: host.name, peer.name))
        }
        return HostView(host: host,
                        instances: local.map { ResolvedInstance(instance: $0, ringSize: $0.ringSize ?? defaults.ringSize) },
                        links: links, peers: peers, services: services,
                        controlSocket: host.controlSocket ?? defaultSocket)
    }
}
