import VIOLinux
import VIOTopology

/// Why an agent cannot start or stopped, with what to do about it.
public enum AgentError: Error, Sendable, CustomStringConvertible {
    /// The topology file has errors.
    case invalidTopology(TopologyError)
    /// `--host` names a host the topology does not declare.
    case unknownHost(String, declared: [String], file: String)
    /// Another agent is already serving the control socket.
    case alreadyRunning(socket: String)
    /// The requested transport is not available on this machine.
    case transportUnavailable(String)
    /// A system call failed while setting up or serving.
    case system(SystemError, doing: String)
    /// The agent's key is missing, unsafe, or not the one the topology gives its host.
    case security(String)

    public var description: String {
        switch self {
        case .invalidTopology(let error):
            return "invalid topology:\n\(error)"
        case .unknownHost(let name, let declared, let file):
            return "host '\(name)' is not declared in \(file); declared hosts: \(declared.joined(separator: ", ")). Pass one of them with --host."
        case .alreadyRunning(let socket):
            return "another vio-agent is already serving \(socket); stop it first or pass a different --control-socket"
        case .transportUnavailable(let reason):
            return reason
        case .system(let error, let doing):
            return "\(doing): \(error)"
        case .security(let reason):
            return reason
        }
    }
}
