import Foundation

/// Several agents, one control socket per host: what the loopback and namespace clusters
/// share for starting instances and reading status.
protocol AgentCluster {
    /// The control socket of `host`'s agent.
    func socket(_ host: String) -> String
}

extension AgentCluster {
    /// Starts `vio-probe` on `host`'s agent.
    func probe(_ host: String, _ arguments: [String]) throws -> ToolProcess {
        try ToolProcess("vio-probe", arguments + ["--socket", socket(host)])
    }

    func status(_ host: String) throws -> String {
        try Tools.run("vioctl", ["status", "--socket", socket(host)]).stdout
    }

    /// Waits until `vioctl status` on `host` contains `text` (a liveness bound).
    func waitForStatus(_ host: String, _ text: String, timeout: TimeInterval = 20) throws -> Bool {
        try Tools.waitUntil(timeout: timeout) { try status(host).contains(text) }
    }

    /// Waits until `host` shows `peers` peer hosts up with both their channels.
    func waitForAllPeersUp(_ host: String, _ peers: Int, timeout: TimeInterval = 20) throws -> Bool {
        try Tools.waitUntil(timeout: timeout) {
            try status(host).split(separator: "\n").filter { $0.contains(" up ") && $0.contains("channels 2/2") }.count == peers
        }
    }
}
