/// Cross-references between sections: duplicates, dangling names, impossible pairs.
extension NodeDecoder {
    func validate(_ t: Topology) {
        reportDuplicates(t.hosts.map { ($0.name, $0.location) }, kind: "host")
        reportDuplicates(t.instances.map { ($0.name, $0.location) }, kind: "instance")
        reportDuplicates(t.services.map { ($0.name, $0.location) }, kind: "service")

        var endpointsSeen: [String: Host] = [:]
        for host in t.hosts {
            let key = "\(host.address):\(host.port)"
            if let other = endpointsSeen[key], other.name != host.name {
                error(at: host.location, "hosts '\(other.name)' and '\(host.name)' both use \(key)",
                      hint: "give each host its own address or port")
            } else {
                endpointsSeen[key] = host
            }
        }

        let hostNames = Set(t.hosts.map(\.name))
        for instance in t.instances where !hostNames.contains(instance.host) {
            error(at: instance.location, "instance '\(instance.name)' is on host '\(instance.host)', which is not declared",
                  hint: suggestion(instance.host, among: hostNames))
        }

        let instanceHost = Dictionary(t.instances.map { ($0.name, $0.host) }, uniquingKeysWith: { a, _ in a })
        let hostsByName = Dictionary(t.hosts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var pairsSeen: [String: SourceLocation] = [:]
        for link in t.links {
            var known = true
            for (end, at) in [(link.endpoints.0, link.endpointLocations.0), (link.endpoints.1, link.endpointLocations.1)]
            where instanceHost[end] == nil {
                error(at: at, "link names instance '\(end)', which is not declared",
                      hint: suggestion(end, among: Set(instanceHost.keys)))
                known = false
            }
            guard known else { continue }
            let key = [link.endpoints.0, link.endpoints.1].sorted().joined(separator: "\u{0}")
            if let first = pairsSeen[key] {
                error(at: link.location, "link \(link.endpoints.0) <-> \(link.endpoints.1) is declared twice",
                      hint: "first declared at \(first)")
                continue
            }
            pairsSeen[key] = link.location
            if let a = hostsByName[instanceHost[link.endpoints.0]!], let b = hostsByName[instanceHost[link.endpoints.1]!],
               a.name != b.name, a.nat == .behind, b.nat == .behind {
                error(at: link.location,
                      "link \(link.endpoints.0) <-> \(link.endpoints.1) joins hosts '\(a.name)' and '\(b.name)', both behind NAT: neither can accept a connection",
                      hint: "set 'nat: none' on the host that can accept connections")
            }
        }

        validateSecurity(t, linkedHosts: linkedHostPairs(t, instanceHost: instanceHost))

        for service in t.services {
            for endpoint in [service.server] + service.listen where !hostNames.contains(endpoint.host) {
                error(at: endpoint.location, "service '\(service.name)' names host '\(endpoint.host)', which is not declared",
                      hint: suggestion(endpoint.host, among: hostNames))
            }
        }
    }

    /// Host pairs that carry at least one link, as sorted name pairs.
    private func linkedHostPairs(_ t: Topology, instanceHost: [String: String]) -> Set<[String]> {
        var pairs: Set<[String]> = []
        for link in t.links {
            guard let a = instanceHost[link.endpoints.0], let b = instanceHost[link.endpoints.1], a != b else { continue }
            pairs.insert([a, b].sorted())
        }
        return pairs
    }

    /// Encrypted pairs need both hosts' keys; keys are unique; host_pairs name declared hosts.
    private func validateSecurity(_ t: Topology, linkedHosts: Set<[String]>) {
        let hostNames = Set(t.hosts.map(\.name))
        for pair in t.hostPairs {
            for name in [pair.hosts.0, pair.hosts.1] where !hostNames.contains(name) {
                error(at: pair.location, "host pair names host '\(name)', which is not declared",
                      hint: suggestion(name, among: hostNames))
            }
        }
        var reported: Set<String> = []
        for pair in linkedHosts.sorted(by: { $0.lexicographicallyPrecedes($1) }) where t.security(between: pair[0], pair[1]) == .tls {
            for (name, other) in [(pair[0], pair[1]), (pair[1], pair[0])] {
                guard let host = t.host(named: name), host.key == nil, reported.insert(name).inserted else { continue }
                error(at: host.location,
                      "host '\(name)' has no 'key', but its channels to '\(other)' are encrypted (security: tls\(t.hostPairs.contains { $0.joins(name, other) } ? "" : ", the default"))",
                      hint: "run `vioctl keys generate \(name)` on \(name) and paste the printed 'key:' line under the host, or declare the pair plaintext in 'host_pairs'")
            }
        }
        var owners: [[UInt8]: String] = [:]
        for host in t.hosts {
            guard let key = host.key else { continue }
            if let other = owners[key.bytes] {
                error(at: host.location, "hosts '\(other)' and '\(host.name)' have the same key",
                      hint: "every host needs its own key pair: vioctl keys generate \(host.name)")
            } else {
                owners[key.bytes] = host.name
            }
        }
    }

    private func reportDuplicates(_ entries: [(String, SourceLocation)], kind: String) {
        var first: [String: SourceLocation] = [:]
        for (name, location) in entries {
            if let earlier = first[name] {
                error(at: location, "duplicate \(kind) name '\(name)'", hint: "first declared at \(earlier)")
            } else {
                first[name] = location
            }
        }
    }

    private func suggestion(_ name: String, among names: Set<String>) -> String? {
        if let close = Self.closest(to: name, in: names.sorted()) { return "did you mean '\(close)'?" }
        return names.isEmpty ? nil : "declared: \(names.sorted().joined(separator: ", "))"
    }
}
