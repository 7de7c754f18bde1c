import Yams

/// Section by section decoding of a topology document into the model.
extension NodeDecoder {
    static let topLevelKeys = ["cluster", "version", "defaults", "hosts", "instances", "links", "services", "host_pairs"]
    static let defaultsKeys = ["ring_size", "max_message_size", "port", "transport", "channels",
                               "heartbeat_interval_ms", "peer_timeout_ms", "security", "rekey_after", "rekey_interval_s",
                               "agent_poll_us", "metrics_listen", "not_responding_ms"]
    static let hostKeys = ["name", "address", "port", "transport", "rdma_device", "nat", "channels", "control_socket",
                           "key", "key_file", "agent_poll_us", "metrics_listen"]
    static let hostPairKeys = ["between", "security"]
    static let instanceKeys = ["name", "host", "uid", "gid", "token_file", "ring_size"]
    static let linkKeys = ["between", "group", "ring_size", "max_message_size"]
    static let serviceKeys = ["name", "protocol", "server", "listen", "idle_timeout_ms"]
    static let endpointKeys = ["host", "address"]

    static let ringSizes = ByteSize.kibibytes(4)...ByteSize.gibibytes(1)
    static let messageSizes = ByteSize(bytes: 1)...ByteSize.gibibytes(1)
    static let maximumGroupSize = 256
    static let rekeySizes = ByteSize.kibibytes(64)...ByteSize(bytes: 1 << 40)

    func decodeTopology(_ root: Node) -> Topology? {
        guard let top = fields(of: root, in: "the topology", allowed: Self.topLevelKeys) else { return nil }
        let cluster = top.name("cluster")
        var version = Topology.formatVersion
        if let v = top.integer("version", in: 0...Int.max, required: true) {
            if v != Topology.formatVersion {
                error(at: top.location(of: "version"), "format version \(v) is not supported; this build reads version \(Topology.formatVersion)")
            }
            version = v
        }
        let defaults = top["defaults"].map(decodeDefaults) ?? Defaults()
        let hosts = top.required("hosts").map { node in
            items(of: node, in: "'hosts'").compactMap { decodeHost($0, defaults: defaults) }
        } ?? []
        if let node = top["hosts"], hosts.isEmpty, diagnostics.isEmpty {
            error(node, "'hosts' is empty: declare at least one host")
        }
        let instances = top["instances"].map { node in
            items(of: node, in: "'instances'").compactMap(decodeInstance)
        } ?? []
        let links = top["links"].map { node in
            items(of: node, in: "'links'").flatMap(decodeLinks)
        } ?? []
        let services = top["services"].map { node in
            items(of: node, in: "'services'").compactMap(decodeService)
        } ?? []
        let pairs = top["host_pairs"].map { node in
            items(of: node, in: "'host_pairs'").compactMap(decodeHostPair)
        } ?? []
        guard let cluster else { return nil }
        return Topology(cluster: cluster, version: version, defaults: defaults, hosts: hosts,
                        instances: instances, links: links, services: services, hostPairs: pairs)
    }

    private func decodeDefaults(_ node: Node) -> Defaults {
        var d = Defaults()
        guard let f = fields(of: node, in: "'defaults'", allowed: Self.defaultsKeys) else { return d }
        if let v = f.size("ring_size", powerOfTwo: true, in: Self.ringSizes) { d.ringSize = v }
        if let v = f.size("max_message_size", powerOfTwo: false, in: Self.messageSizes) { d.maxMessageSize = v }
        if let v = f.integer("port", in: 1...65535) { d.port = UInt16(v) }
        if let v = f.choice("transport", Transport.self) { d.transport = v }
        if let v = f.integer("channels", in: 1...64) { d.channels = v }
        if let v = f.integer("heartbeat_interval_ms", in: 10...60_000) { d.heartbeatIntervalMilliseconds = v }
        if let v = f.integer("peer_timeout_ms", in: 50...600_000) { d.peerTimeoutMilliseconds = v }
        if let v = f.choice("security", Security.self) { d.security = v }
        if let v = f.size("rekey_after", powerOfTwo: false, in: Self.rekeySizes) { d.rekeyAfter = v }
        if let v = f.integer("rekey_interval_s", in: 1...86_400 * 7) { d.rekeyIntervalSeconds = v }
        if let v = f.pollWindow("agent_poll_us", in: 0...10_000) { d.agentPollMicroseconds = v }
        if let v = f.integer("not_responding_ms", in: 0...3_600_000) { d.notRespondingMilliseconds = v }
        d.metricsListen = metricsListen(f)
        if d.peerTimeoutMilliseconds <= d.heartbeatIntervalMilliseconds {
            error(at: f.location(of: "peer_timeout_ms"),
                  "peer_timeout_ms (\(d.peerTimeoutMilliseconds)) must be longer than heartbeat_interval_ms (\(d.heartbeatIntervalMilliseconds))",
                  hint: "a peer is declared down after several missed heartbeats")
        }
        return d
    }

    private func decodeHost(_ node: Node, defaults: Defaults) -> Host? {
        guard let f = fields(of: node, in: "a host", allowed: Self.hostKeys) else { return nil }
        let name = f.name("name")
        let address = f.string("address", required: true)
        if let address, !Addresses.isValidHost(address) {
            error(at: f.location(of: "address"), "'\(address)' is not a valid address for host '\(name ?? "?")'",
                  hint: "use an IPv4 or IPv6 address, or a DNS name")
        }
        let port = f.integer("port", in: 1...65535).map(UInt16.init) ?? defaults.port
        let transport = f.choice("transport", Transport.self) ?? defaults.transport
        let rdmaDevice = f.string("rdma_device")
        if rdmaDevice != nil && transport == .tcp {
            warning(at: f.location(of: "rdma_device"), "rdma_device is ignored because transport is 'tcp'")
        }
        let nat = f.choice("nat", NATRole.self) ?? .none
        let channels = f.integer("channels", in: 1...64) ?? defaults.channels
        let socket = f.string("control_socket")
        if let socket, !socket.hasPrefix("/") {
            error(at: f.location(of: "control_socket"), "control_socket '\(socket)' must be an absolute path")
        }
        var key: HostKey?
        if let (text, value) = f.scalar("key", required: false) {
            key = HostKey(text: text)
            if key == nil {
                error(value, "'key' of host '\(name ?? "?")' is not an Ed25519 public key",
                      hint: "paste the line `vioctl keys generate \(name ?? "HOST")` printed: key: ed25519:<44 base64 characters>")
            }
        }
        let keyFile = f.string("key_file")
        let poll = f.pollWindow("agent_poll_us", in: 0...10_000) ?? defaults.agentPollMicroseconds
        // `off` on a host turns off what `defaults` set.
        let metrics = f.string("metrics_listen") == "off" ? nil : metricsListen(f) ?? defaults.metricsListen
        if let keyFile, !keyFile.hasPrefix("/") {
            error(at: f.location(of: "key_file"), "key_file '\(keyFile)' must be an absolute path")
        }
        guard let name, let address else { return nil }
        return Host(name: name, address: address, port: port, transport: transport, rdmaDevice: rdmaDevice,
                    nat: nat, channels: channels, controlSocket: socket, key: key, keyFile: keyFile,
                    agentPollMicroseconds: poll, metricsListen: metrics, location: f.location)
    }

    /// `metrics_listen: ADDRESS:PORT` (an IPv6 address in brackets), checked; `off` is nil.
    private func metricsListen(_ f: Fields) -> String? {
        guard let text = f.string("metrics_listen"), text != "off" else { return nil }
        guard Addresses.splitHostPort(text) != nil else {
            error(at: f.location(of: "metrics_listen"), "metrics_listen '\(text)' is not ADDRESS:PORT",
                  hint: "for example 127.0.0.1:9464, 0.0.0.0:9464 or [::1]:9464")
            return nil
        }
        return text
    }

    private func decodeInstance(_ node: Node) -> Instance? {
        guard let f = fields(of: node, in: "an instance", allowed: Self.instanceKeys) else { return nil }
        let name = f.name("name")
        let host = f.name("host")
        let uid = f.integer("uid", in: 0...Int(UInt32.max - 1)).map(UInt32.init)
        let gid = f.integer("gid", in: 0...Int(UInt32.max - 1)).map(UInt32.init)
        let token = f.string("token_file")
        let ring = f.size("ring_size", powerOfTwo: true, in: Self.ringSizes)
        guard let name, let host else { return nil }
        return Instance(name: name, host: host, uid: uid, gid: gid, tokenFile: token, ringSize: ring,
                        location: f.location)
    }

    /// One entry of `links`: `between: [a, b]` is one link, `group: [a, b, c]` all pairs.
    private func decodeLinks(_ node: Node) -> [Link] {
        guard let f = fields(of: node, in: "a link", allowed: Self.linkKeys) else { return [] }
        let ring = f.size("ring_size", powerOfTwo: true, in: Self.ringSizes)
        let maxMessage = f.size("max_message_size", powerOfTwo: false, in: Self.messageSizes)
        let members: [(String, Node)]
        switch (f["between"], f["group"]) {
        case (.some, .some):
            error(node, "a link has both 'between' and 'group'; use one", hint: "'between' for a pair, 'group' for all pairs of a set")
            return []
        case (.none, .none):
            error(node, "a link needs 'between: [a, b]' or 'group: [a, b, c]'")
            return []
        case (.some, .none):
            guard let pair = f.names("between") else { return [] }
            guard pair.count == 2 else {
                error(at: f.location(of: "between"), "'between' lists \(pair.count) instances; it takes exactly 2",
                      hint: "use 'group' to link every pair of a larger set")
                return []
            }
            members = pair
        case (.none, .some):
            guard let group = f.names("group") else { return [] }
            guard (2...Self.maximumGroupSize).contains(group.count) else {
                error(at: f.location(of: "group"), "'group' lists \(group.count) instances; it takes 2 to \(Self.maximumGroupSize)")
                return []
            }
            members = group
        }
        var seen: Set<String> = []
        for (name, item) in members where !seen.insert(name).inserted {
            error(item, "instance '\(name)' appears twice in one link", hint: "an instance cannot link to itself")
            return []
        }
        var links: [Link] = []
        for i in members.indices {
            for j in members.indices where j > i {
                links.append(Link(endpoints: (members[i].0, members[j].0), ringSize: ring,
                                  maxMessageSize: maxMessage, location: location(members[i].1),
                                  endpointLocations: (location(members[i].1), location(members[j].1))))
            }
        }
        return links
    }

    /// One entry of `host_pairs`: `{ between: [a, b], security: plaintext }`.
    private func decodeHostPair(_ node: Node) -> HostPair? {
        guard let f = fields(of: node, in: "a host pair", allowed: Self.hostPairKeys) else { return nil }
        let security = f.choice("security", Security.self)
        if f["security"] == nil { error(node, "a host pair needs 'security: tls' or 'security: plaintext'") }
        guard let pair = f.names("between") else { return nil }
        guard pair.count == 2, pair[0].0 != pair[1].0 else {
            error(at: f.location(of: "between"), "'between' of a host pair takes two different hosts")
            return nil
        }
        guard let security else { return nil }
        return HostPair(hosts: (pair[0].0, pair[1].0), security: security, location: location(pair[0].1))
    }

    private func decodeService(_ node: Node) -> Service? {
        guard let f = fields(of: node, in: "a service", allowed: Self.serviceKeys) else { return nil }
        let name = f.name("name")
        let proto = f.choice("protocol", ServiceProtocol.self) ?? .tcp
        let server = f.required("server").flatMap { decodeEndpoint($0, in: "'server' of service '\(name ?? "?")'") }
        let listen = f.required("listen").map { node in
            items(of: node, in: "'listen' of service '\(name ?? "?")'").compactMap {
                decodeEndpoint($0, in: "a 'listen' entry of service '\(name ?? "?")'")
            }
        } ?? []
        if let node = f["listen"], listen.isEmpty, case .sequence(let s) = node, s.isEmpty {
            error(node, "service '\(name ?? "?")' has no 'listen' entry: no client could reach it")
        }
        let idle = f.integer("idle_timeout_ms", in: 10...86_400_000) ?? Service.defaultIdleTimeoutMilliseconds
        guard let name, let server else { return nil }
        return Service(name: name, proto: proto, server: server, listen: listen,
                       idleTimeoutMilliseconds: idle, location: f.location)
    }

    private func decodeEndpoint(_ node: Node, in what: String) -> ServiceEndpoint? {
        guard let f = fields(of: node, in: what, allowed: Self.endpointKeys) else { return nil }
        let host = f.name("host")
        guard let (text, value) = f.scalar("address", required: true) else { return nil }
        guard let (address, port) = Addresses.splitHostPort(text) else {
            error(value, "'\(text)' in \(what) is not an address with a port",
                  hint: "write 127.0.0.1:5432 or [::1]:5432")
            return nil
        }
        guard let host else { return nil }
        return ServiceEndpoint(host: host, address: address, port: port, location: f.location)
    }
}
