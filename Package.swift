// swift-tools-version:6.1
import PackageDescription

import class Foundation.ProcessInfo

// One module per layer; see docs/architecture.md for how data flows between them.
/// The agent's per-frame code (channels, multiplexer) touches class state on every frame;
/// Swift's run-time exclusivity checks there cost more than the rest of its user time
/// (measured with perf). Compile-time checks still apply; only agent-only modules opt out,
/// and only in release builds (tests run the debug build with every check on).
let agentHotPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "VIO",
    products: [
        .library(name: "VIO", targets: ["VIO"]),
        .executable(name: "vio-agent", targets: ["vio-agent"]),
        .executable(name: "vioctl", targets: ["vioctl"]),
        .executable(name: "vio-probe", targets: ["vio-probe"]),
        /// libvio.so, the C ABI (include/vio.h), with the Swift runtime linked in statically
        /// so C and C++ programs load it with no Swift toolchain.
        .library(name: "vio", type: .dynamic, targets: ["VIOCABI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        // MARK: C libraries and the one C shim
        .systemLibrary(name: "CURing", pkgConfig: "liburing",
                       providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CIBVerbs", pkgConfig: "libibverbs",
                       providers: [.apt(["libibverbs-dev"])]),
        .systemLibrary(name: "CRDMACM", pkgConfig: "librdmacm",
                       providers: [.apt(["librdmacm-dev"])]),
        .systemLibrary(name: "CNUMA", pkgConfig: "numa", providers: [.apt(["libnuma-dev"])]),
        .systemLibrary(name: "CACL", pkgConfig: "libacl", providers: [.apt(["libacl1-dev"])]),
        // liburing is used only from C, behind an opaque handle: its copy of the io_uring
        // structs clashes with the kernel header swift-system imports.
        .target(name: "CVIOShim", dependencies: ["CURing"]),
        // RDMA RC queue pairs carrying a byte stream (librdmacm set-up, verbs data path),
        // behind opaque handles: verbs' unions and inline functions stay in C.
        .target(name: "CVIORDMA", dependencies: ["CIBVerbs", "CRDMACM"]),
        // TLS 1.3 over the system's OpenSSL (libssl-dev), behind opaque handles.
        .target(name: "CVIOTLS", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),

        // MARK: Platform-neutral layers
        /// Byte layouts shared by processes and hosts: frame header, control messages.
        .target(name: "VIOWire"),
        /// The cluster topology language: YAML loading, validation, resolution per host.
        .target(name: "VIOTopology", dependencies: ["VIOWire", .product(name: "Yams", package: "Yams")]),

        // MARK: Linux layers
        /// Every syscall VIO makes, behind typed wrappers that retry EINTR.
        .target(name: "VIOLinux", dependencies: [
            "CVIOShim", "CNUMA", "CACL",
            .product(name: "SystemPackage", package: "swift-system"),
        ]),
        /// Shared-memory message rings: layout, producer/consumer, doorbells.
        .target(name: "VIOSharedMemory", dependencies: [
            "VIOLinux",
            .product(name: "Atomics", package: "swift-atomics"),
        ]),
        /// Agent identity and the secure channel: Ed25519 key files, TLS 1.3 sessions.
        .target(name: "VIOSecurity", dependencies: ["CVIOTLS"]),
        /// Physical channels between agents: TCP (plain or TLS), RDMA.
        .target(name: "VIOTransport", dependencies: [
            "VIOWire", "VIOLinux", "VIOSecurity", "CIBVerbs", "CRDMACM", "CVIORDMA",
            .product(name: "SystemPackage", package: "swift-system"),
            .product(name: "DequeModule", package: "swift-collections"),
        ], swiftSettings: agentHotPath),
        /// The per-host daemon as a library (admission, link set-up, multiplexer).
        .target(name: "VIOAgent", dependencies: [
            "VIOWire", "VIOTopology", "VIOLinux", "VIOSharedMemory", "VIOTransport", "VIOSecurity",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Atomics", package: "swift-atomics"),
            .product(name: "DequeModule", package: "swift-collections"),
        ], swiftSettings: agentHotPath),
        /// libvio: what a database instance links to attach and use its links.
        .target(name: "VIO", dependencies: ["VIOWire", "VIOLinux", "VIOSharedMemory"]),

        /// The C ABI: `@_cdecl` functions over libvio, declared in include/vio.h.
        .target(name: "VIOCABI", dependencies: ["VIO", "VIOLinux", "VIOWire"], exclude: ["exports.map"],
                linkerSettings: [.unsafeFlags(["-static-stdlib",
                                               "-Xlinker", "--version-script=Sources/VIOCABI/exports.map"])]),

        // MARK: Command-line tools
        .executableTarget(name: "vio-agent", dependencies: [
            "VIOAgent", "VIOTopology", "VIOLinux",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "vioctl", dependencies: [
            "VIO", "VIOTopology", "VIOWire", "VIOLinux", "VIOSecurity",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        /// A scriptable instance: ping/echo round trips, checked streams, failure drills.
        .executableTarget(name: "vio-probe", dependencies: [
            "VIO", "VIOLinux", "VIOWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // MARK: Example: an in-memory SQL database served over VIO links (examples/sql)
        .systemLibrary(name: "CSQLite", path: "examples/sql/CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "SQLWire", dependencies: ["VIOWire", "VIOLinux"], path: "examples/sql/SQLWire"),
        .executableTarget(name: "vio-sql-server", dependencies: [
            "CSQLite", "SQLWire", "VIO", "VIOLinux",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "examples/sql/SQLServer"),
        .executableTarget(name: "vio-sql", dependencies: [
            "SQLWire", "VIO", "VIOLinux",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "examples/sql/SQLClient"),

        // MARK: Tests
        .testTarget(name: "VIOTopologyTests", dependencies: ["VIOTopology"], exclude: ["Fixtures"]),
        .testTarget(name: "VIOWireTests", dependencies: ["VIOWire"]),
        .testTarget(name: "VIOSharedMemoryTests", dependencies: ["VIOSharedMemory", "VIOLinux"]),
        .testTarget(name: "VIOLinuxTests", dependencies: ["VIOLinux", "CIBVerbs", "VIOTransport"]),
        .testTarget(name: "VIOAgentTests", dependencies: [
            "VIOAgent", "VIOTransport", "VIOTopology", "VIOSharedMemory", "VIOLinux", "VIOWire",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "VIOSecurityTests", dependencies: ["VIOSecurity", "CVIOTLS"]),
        .testTarget(name: "VIOToolsTests", dependencies: ["VIO", "VIOLinux", "VIOWire"],
                    exclude: ["C"]),
    ]
)

// Micro-benchmarks (Benchmarks/HotPaths, ordo-one/benchmark) join the package only when asked,
// so the benchmark framework never slows down `make test`:
//   VIO_BENCHMARKS=1 swift package --scratch-path .build-bench benchmark   (or `make microbench`)
if ProcessInfo.processInfo.environment["VIO_BENCHMARKS"] != nil {
    package.dependencies.append(
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]))
    package.targets.append(
        .executableTarget(
            name: "HotPaths",
            dependencies: [
                "VIOWire", "VIOTopology", "VIOSharedMemory",
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/HotPaths",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]))
}
