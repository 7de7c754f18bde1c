import Benchmark
import VIOSharedMemory
import VIOTopology
import VIOWire

/// Hot paths measured in isolation, on one thread (no cross-core traffic): what each call costs
/// by itself. Side-by-side comparisons with the alternatives live in `make bench`.
let benchmarks: @Sendable () -> Void = {
    // 1000 operations a sample, so per-sample overhead does not swamp nanosecond operations;
    // the tool reports per-operation figures for scaled benchmarks.
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                           scalingFactor: .kilo, maxDuration: .seconds(2))

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

    // One link for all samples: a fresh region per sample would measure page faults.
    guard let (a, b) = try? LinkEndpoint.localPair() else { fatalError("cannot create a link") }
    for size in [64, 4096] {
        Benchmark("ring.send_receive.\(size)") { benchmark in
            let message = [UInt8](repeating: 1, count: size)
            for _ in benchmark.scaledIterations {
                try message.withUnsafeBytes { try a.send($0, timeout: .zero) }
                blackHole(try b.receive(timeout: .zero) { $0.count })
            }
        }
    }

    Benchmark("ring.claim_commit_receive.64") { benchmark in
        for _ in benchmark.scaledIterations {
            let buffer = try a.claim(64, timeout: .zero)
            buffer.storeBytes(of: UInt64(7), as: UInt64.self)
            try a.commit(64)
            blackHole(try b.receive(timeout: .zero) { $0.count })
        }
    }

    Benchmark("topology.parse.embedded") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try TopologyLoader.parse(text: EmbeddedTopology.text))
        }
    }
}
