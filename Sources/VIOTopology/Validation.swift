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

        for service in t.services {
            for endpoint in [service.server] + service.listen where !hostNames.contains(endpoint.host) {
                error(at: endpoint.location, "service '\(service.name)' names host '\(endpoint.host)', which is not declared",
                      hint: suggestion(endpoint.host, among: hostNames))
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
