import Foundation
import Testing

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

    /// Checks that `instance` on `host` can ping `peer` on `peerHost` (100 round trips,
    /// both probes exiting 0): what tests ask after a link has been broken and restored.
    func expectRoundTrips(from host: String, _ instance: String, to peerHost: String, _ peer: String,
                          sourceLocation: SourceLocation = #_sourceLocation) throws {
        let echo = try probe(peerHost, ["echo", "--as", peer])
        #expect(echo.waitFor("attached"), sourceLocation: sourceLocation)
        let ping = try probe(host, ["ping", "--as", instance, "--peer", peer, "--count", "100", "--warmup", "0"])
        #expect(ping.finish() == 0, "\(ping.output)", sourceLocation: sourceLocation)
        #expect(echo.finish() == 0, sourceLocation: sourceLocation)
    }

    /// Starts a checked stream of `count` messages (sizes up to `maxSize`) from `instance` on
    /// `host` to `peer` on `peerHost`, the verifier attached first; returns (stream, verify).
    func startVerifiedStream(from host: String, _ instance: String, to peerHost: String, _ peer: String,
                             count: Int, maxSize: Int = 16384,
                             sourceLocation: SourceLocation = #_sourceLocation) throws -> (ToolProcess, ToolProcess) {
        let verify = try probe(peerHost, ["verify", "--as", peer, "--count", "\(count)"])
        #expect(verify.waitFor("attached"), sourceLocation: sourceLocation)
        let stream = try probe(host, ["stream", "--as", instance, "--peer", peer, "--count", "\(count)",
                                      "--max-size", "\(maxSize)"])
        return (stream, verify)
    }

    /// Waits until `host` shows `peers` peer hosts up with both their channels.
    func waitForAllPeersUp(_ host: String, _ peers: Int, timeout: TimeInterval = 20) throws -> Bool {
        try Tools.waitUntil(timeout: timeout) {
            try status(host).split(separator: "\n").filter { $0.contains(" up ") && $0.contains("channels 2/2") }.count == peers
        }
    }
}
