import Benchmark
import VIOTopology
import VIOWire

/// Hot paths measured in isolation. The ring and frame benchmarks join as those layers land;
/// side-by-side comparisons with the alternatives live in `make bench`.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                           maxDuration: .seconds(2))

    let status = ControlMessage.status(AgentStatus(
        cluster: "bench", host: "h1", pid: 1, uptimeMilliseconds: 1, transport: "tcp",
        instances: (0..<64).map { .init(name: "db\($0)", attached: true, pid: Int32($0)) },
        links: (0..<64).map { .init(localEnd: "db\($0)", peerEnd: "db\($0 + 1)", peerHost: "h1", state: "open") }))
    let statusBytes = status.encoded()

    Benchmark("control.status.encode.64x64") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(status.encoded()) }
    }

    Benchmark("control.status.decode.64x64") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try ControlMessage.decode(statusBytes)) }
    }

    Benchmark("topology.parse.embedded") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try TopologyLoader.parse(text: EmbeddedTopology.text))
        }
    }
}
