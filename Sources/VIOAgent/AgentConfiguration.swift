import VIOTopology

/// Everything an agent needs to start.
public struct AgentConfiguration: Sendable {
    /// The cluster topology.
    public var topology: Topology
    /// Where the topology came from, for messages.
    public var topologySource: String
    /// This agent's host, resolved from the topology.
    public var view: HostView
    /// The private key file given on the command line; `nil`: the host's `key_file`, else
    /// ``Topology/defaultKeyFile(host:)``.
    public var keyFile: String?

    /// The private key file this agent uses.
    public var resolvedKeyFile: String {
        keyFile ?? view.host.keyFile ?? Topology.defaultKeyFile(host: view.host.name)
    }

    /// Resolves `hostName` in `topology`; `controlSocket` overrides the topology's path.
    public init(topology: Topology, source: String, hostName: String, controlSocket: String?,
                defaultControlSocket: String) throws(AgentError) {
        guard let view = topology.view(for: hostName, controlSocket: defaultControlSocket) else {
            throw .unknownHost(hostName, declared: topology.hosts.map(\.name), file: source)
        }
        var resolved = view
        if let controlSocket { resolved.controlSocket = controlSocket }
        self.topology = topology
        self.topologySource = source
        self.view = resolved
    }

    /// `running` after a reload to `topology`, whose view of this host is `view`.
    init(reloading running: AgentConfiguration, topology: Topology, view: HostView) {
        self = running
        self.topology = topology
        self.view = view
    }
}
